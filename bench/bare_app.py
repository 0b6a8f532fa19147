"""The yardstick: a bare Flask JSON endpoint served the same way as `qa serve`."""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/api/ask")
def ask():
    """Answer nothing, as fast as Flask can."""
    return jsonify({"answers": [], "answerable": False})
