"""The OpenAPI 3.0 document of the HTTP API."""

from __future__ import annotations

from .. import __version__


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_ERRORS = {
    "400": _error("Bad question or parameter"), "413": _error("Request body too large"),
    "429": _error("Rate limited"), "500": _error("Internal error"),
    "503": _error("Index not loaded yet"),
}


def openapi_document(server: str = "/") -> dict:
    """Build the document; `server` is the configured public URL, or "/" (relative)."""
    answer_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/AskResult"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Chinese newspaper archive QA", "version": __version__,
                 "description": "Ask a question in Chinese; get the archive's passages that "
                                "answer it, each with a citation (issue, headline, byline, "
                                "paragraph). `answerable: false` means no confident answer."},
        "servers": [{"url": server}],
        "paths": {
            "/api/ask": {
                "post": {
                    "operationId": "ask", "summary": "Answer a question from the archive",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/AskRequest"}}}},
                    "responses": {"200": {"description": "Ranked answers", "content": answer_ref},
                                  **_ERRORS},
                },
                "get": {
                    "operationId": "askGet", "summary": "Answer a question (query string form)",
                    "parameters": [
                        {"name": "q", "in": "query", "required": True,
                         "schema": {"type": "string", "minLength": 1, "maxLength": 500}},
                        {"name": "top_k", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 50}},
                    ],
                    "responses": {"200": {"description": "Ranked answers", "content": answer_ref},
                                  **_ERRORS},
                },
            },
            "/api/issues": {"get": {
                "operationId": "listIssues", "summary": "List the indexed issues",
                "responses": {"200": {"description": "Indexed issues", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Issues"}}}},
                    "503": _ERRORS["503"]}}},
            "/api/story/{file}/{story}": {"get": {
                "operationId": "getStory", "summary": "One whole story, paragraph by paragraph",
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "story", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 1}},
                    {"name": "generation", "in": "query", "required": False,
                     "description": "the generation the citing answer named (its citation url "
                                    "carries it): the story as that generation has it, while "
                                    "it is on disk; default the current one",
                     "schema": {"type": "string", "pattern": "^gen-[0-9]{6,}$"}}],
                "responses": {"200": {"description": "The story", "content": {
                    "application/json": {"schema": {"type": "object"}}}},
                    "404": _error("No such story, or that generation is gone"),
                    "503": _ERRORS["503"]}}},
            "/api/admin/issues": {"post": {
                "operationId": "uploadIssues", "summary": "Add issue files (editors)",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {"files": {
                        "type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                "responses": {"202": {"description": "Accepted; poll the job", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "400": _ERRORS["400"], "401": _error("Missing or wrong token"),
                    "404": _error("Admin is disabled"), "413": _ERRORS["413"]}}},
            "/api/admin/jobs/{job}": {"get": {
                "operationId": "getJob", "summary": "Outcome of an upload job",
                "security": [{"bearer": []}],
                "parameters": [{"name": "job", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The job", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "401": _error("Missing or wrong token"), "404": _error("No such job")}}},
            "/healthz": {"get": {
                "operationId": "health", "summary": "Readiness",
                "responses": {"200": {"description": "Ready"},
                              "503": {"description": "Index not loaded"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "AskRequest": {"type": "object", "required": ["question"], "properties": {
                    "question": {"type": "string", "minLength": 1, "maxLength": 500},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5}}},
                "Citation": {"type": "object", "properties": {
                    "issue": {"type": "string"}, "file": {"type": "string"},
                    "title": {"type": "string"}, "byline": {"type": "string", "nullable": True},
                    "story": {"type": "integer"}, "paragraph": {"type": "integer"},
                    "lines": {"type": "array", "items": {"type": "integer"}},
                    "url": {"type": "string"}}},
                "Answer": {"type": "object", "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"},
                    "highlight": {"type": "string"},
                    "highlight_span": {"type": "array", "items": {"type": "integer"}},
                    "terms": {"type": "array", "items": {"type": "string"}},
                    "score": {"type": "number"}, "confidence": {"type": "number"},
                    "citation": {"$ref": "#/components/schemas/Citation"},
                    "retrievers": {
                        "type": "object",
                        "description": "each retriever that found the passage: its 1-based rank "
                                       "there and its own score (lexical: BM25; the lexical "
                                       "rank orders the paragraphs of one story by the words "
                                       "beside the question word, so it can differ from the "
                                       "BM25 order within a story)",
                        "additionalProperties": {
                            "type": "object", "properties": {"rank": {"type": "integer"},
                                                             "score": {"type": "number"}}}},
                    "short": {
                        "type": "object", "nullable": True,
                        "description": "the answer itself, as short as it can be said (a "
                                       "number with its unit, a date, a name, a title, a "
                                       "list, a clause), found by rules in this passage; "
                                       "span is [start, end) in characters of text; null "
                                       "when the passage holds no answer of the asked kind",
                        "properties": {"text": {"type": "string"},
                                       "span": {"type": "array", "items": {"type": "integer"},
                                                "minItems": 2, "maxItems": 2}}}}},
                "AskResult": {"type": "object", "properties": {
                    "question": {"type": "string"}, "answerable": {"type": "boolean"},
                    "answers": {"type": "array", "items": {"$ref": "#/components/schemas/Answer"}},
                    "generation": {"type": "string"},
                    "mode": {"type": "string", "enum": ["dense", "lexical only"]},
                    "took_ms": {"type": "number"}}},
                "Issues": {"type": "object", "properties": {
                    "generation": {"type": "string"}, "mode": {"type": "string"},
                    "issues": {"type": "array", "items": {"type": "object"}}}},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"type": "string", "enum": [
                        "queued", "running", "done", "failed"]},
                    "files": {"type": "array", "items": {"type": "object"}},
                    "generation": {"type": "string", "nullable": True},
                    "error": {"type": "string", "nullable": True}}},
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "integer"}, "type": {"type": "string"},
                        "message": {"type": "string"}}}}},
            },
        },
    }
