"""The OpenAPI 3.0 documents: /openapi.json for readers and chatbots (what a bot may import as
tools), /openapi-admin.json for editors' uploads (never imported into a bot by accident)."""

from __future__ import annotations

from .. import __version__
from ..errors import ERROR_TYPES

Q_EXAMPLE = "玉环市有几个国家4A级旅游景区?"
FILE_EXAMPLE = "001_83ee49fea69f0aa9.txt"
_REF = "#/components/schemas/"

CITATION_EXAMPLE = {
    "issue": "001_83ee49fea69f0aa9", "file": FILE_EXAMPLE,
    "title": "台州玉环创成省级全域旅游示范市",
    "byline": "郭海峰 洪嘉", "story": 5, "paragraph": 1, "lines": [67, 69],
    "paper": "台州日报", "date": "2024-07-18", "edition": "第3版",
    "url": "https://qa.example.org/story/001_83ee49fea69f0aa9.txt/5?generation=gen-000001#p1"}
ASK_EXAMPLE = {
    "question": Q_EXAMPLE, "answerable": True,
    "answers": [{
        "id": "001_83ee49fea69f0aa9.txt:5:1", "text": "玉环市现有国家4A级旅游景区3个……",
        "short": {"text": "3个", "span": [13, 15]}, "highlight": "玉环市现有国家4A级旅游景区3个",
        "highlight_span": [0, 15], "terms": ["4a", "国家", "旅游", "景区", "玉环"],
        "score": 1.3, "confidence": 0.8423, "citation": CITATION_EXAMPLE,
        "retrievers": {"lexical": {"rank": 1, "score": 85.81}}}],
    "generation": "gen-000001", "mode": "lexical only", "took_ms": 2.1}


def _json(schema: str, description: str, example: object = None) -> dict:
    content: dict = {"schema": {"$ref": _REF + schema}}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _error(description: str, status: int, message: str) -> dict:
    example = {"error": {"code": status, "type": ERROR_TYPES[status], "message": message}}
    out = _json("Error", description, example)
    if status == 429:
        out["headers"] = {"Retry-After": {"description": "seconds until the window resets",
                                          "schema": {"type": "integer"}, "example": 30}}
    if status == 503:
        out["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                          "schema": {"type": "integer"}, "example": 5}}
    return out


_COMMON = {
    "429": _error("Too many requests from this client (QA_RATE_LIMIT_PER_MINUTE); wait "
                  "Retry-After seconds", 429, "too many requests; slow down"),
    "500": _error("Internal error (logged on the server; no details are returned)", 500,
                  "internal error; it has been logged"),
    "503": _error("The index is not loaded yet (or could not be)", 503,
                  "no index has been built yet: an editor runs `qa index`"),
}


def _info(description: str) -> dict:
    return {"title": "Chinese newspaper archive QA", "version": __version__,
            "description": description}


def _schemas() -> dict:
    nullable_str = {"type": "string", "nullable": True}
    return {
        "AskRequest": {
            "type": "object", "required": ["question"], "additionalProperties": False,
            "description": "A question and what to return. Unknown fields are rejected (400) so "
                           "a misspelt one (topk) never silently changes the answer.",
            "properties": {
                "question": {"type": "string", "minLength": 1, "maxLength": 500,
                             "description": "The question, in Chinese (traditional characters "
                                            "and full-width forms are accepted)",
                             "example": Q_EXAMPLE},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5,
                          "description": "How many passages to return", "example": 3},
                "filters": {"$ref": _REF + "Filters"}}},
        "Filters": {
            "type": "object", "additionalProperties": False,
            "description": "Only passages from issues that meet every condition given. Issues "
                           "without that metadata (no newspaper, no date recorded) are left "
                           "out by a condition on it.",
            "example": {"paper": "台州日报", "date_from": "2024-01-01", "date_to": "2024-12-31"},
            "properties": {
                "paper": {"type": "string", "description": "the newspaper (报名), exactly as "
                          "listIssues gives it", "example": "台州日报"},
                "date_from": {"type": "string", "format": "date", "description": "issues "
                              "dated on or after this day (YYYY-MM-DD)", "example": "2024-01-01"},
                "date_to": {"type": "string", "format": "date", "description": "issues dated "
                            "on or before this day (YYYY-MM-DD)", "example": "2024-12-31"}}},
        "Citation": {
            "type": "object", "description": "Where a passage comes from, to quote to the user",
            "required": ["issue", "file", "title", "byline", "story", "paragraph", "lines",
                         "url"],
            "properties": {
                "issue": {"type": "string", "description": "issue id (file name without .txt)"},
                "file": {"type": "string", "description": "the issue file",
                         "example": FILE_EXAMPLE},
                "paper": {**nullable_str, "description": "newspaper (报名), when the editor "
                          "gave it", "example": "台州日报"},
                "date": {**nullable_str, "format": "date", "description": "issue date "
                         "(YYYY-MM-DD), when the editor gave it", "example": "2024-07-18"},
                "edition": {**nullable_str, "description": "edition or page (版次), when the "
                            "editor gave it", "example": "第3版"},
                "title": {**nullable_str, "description": "headline of the story"},
                "byline": {**nullable_str, "description": "author(s)"},
                "story": {"type": "integer", "minimum": 1, "description": "story number in "
                          "the issue (for getStory)"},
                "paragraph": {"type": "integer", "minimum": 1,
                              "description": "paragraph number in the story"},
                "lines": {"type": "array", "items": {"type": "integer"}, "minItems": 2,
                          "maxItems": 2, "description": "first and last line in the source file"},
                "url": {"type": "string", "description": "the story page, at this paragraph, "
                        "as this generation has it; absolute when the service's public URL "
                        "is configured"}}},
        "Answer": {
            "type": "object", "description": "One ranked passage",
            "required": ["id", "text", "short", "highlight", "highlight_span", "terms", "score",
                         "confidence", "citation", "retrievers"],
            "properties": {
                "id": {"type": "string", "description": "file:story:paragraph"},
                "text": {"type": "string", "description": "the whole passage"},
                "short": {
                    "type": "object", "nullable": True, "required": ["text", "span"],
                    "description": "the answer itself, as short as it can be said (a number "
                                   "with its unit, a date, a name, a title, a list, a clause), "
                                   "found by rules in this passage; span is [start, end) in "
                                   "characters of text; null when the passage holds no answer "
                                   "of the asked kind",
                    "properties": {"text": {"type": "string"},
                                   "span": {"type": "array", "items": {"type": "integer"},
                                            "minItems": 2, "maxItems": 2}}},
                "highlight": {"type": "string", "description": "the passage's best sentence"},
                "highlight_span": {"type": "array", "items": {"type": "integer"},
                                   "minItems": 2, "maxItems": 2,
                                   "description": "[start, end) of highlight in text"},
                "terms": {"type": "array", "items": {"type": "string"},
                          "description": "the question's words found in the passage"},
                "score": {"type": "number", "description": "fused ranking score"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                               "description": "the probability that this passage answers "
                                              "the question, from a calibrated model over "
                                              "evidence (coverage of the question's words, "
                                              "its numbers, grades, phases, years, places "
                                              "present or missing, an answer of the asked "
                                              "kind); `answerable` is the top passage's "
                                              "confidence reaching QA_MIN_CONFIDENCE"},
                "citation": {"$ref": _REF + "Citation"},
                "retrievers": {
                    "type": "object",
                    "description": "each retriever that found the passage: its 1-based rank "
                                   "there and its own score (lexical: BM25; the lexical rank "
                                   "orders the paragraphs of one story by the words beside "
                                   "the question word, so it can differ from the BM25 order "
                                   "within a story)",
                    "additionalProperties": {
                        "type": "object", "required": ["rank", "score"],
                        "properties": {"rank": {"type": "integer"},
                                       "score": {"type": "number"}}}}}},
        "AskResult": {
            "type": "object",
            "required": ["question", "answerable", "answers", "generation", "mode", "took_ms"],
            "properties": {
                "question": {"type": "string", "description": "the question as asked"},
                "answerable": {"type": "boolean", "description": "false: no confident answer; "
                               "the answers are only the closest passages, say you do not know"},
                "answers": {"type": "array", "items": {"$ref": _REF + "Answer"},
                            "description": "best first"},
                "generation": {"type": "string", "description": "the index generation that "
                               "answered (pass it to getStory)", "example": "gen-000001"},
                "mode": {"type": "string", "enum": ["dense", "lexical only"],
                         "description": "with the sentence model, or keyword search only"},
                "took_ms": {"type": "number", "description": "search time"}}},
        "Issue": {
            "type": "object", "required": ["file", "issue", "sha256", "stories", "passages"],
            "properties": {
                "file": {"type": "string", "example": FILE_EXAMPLE},
                "issue": {"type": "string", "description": "file name without .txt"},
                "paper": {**nullable_str, "description": "newspaper (报名), if known"},
                "date": {**nullable_str, "format": "date", "description": "issue date, if known"},
                "edition": {**nullable_str, "description": "edition or page (版次), if known"},
                "sha256": {"type": "string", "description": "hash of the issue's text"},
                "stories": {"type": "integer", "minimum": 0},
                "passages": {"type": "integer", "minimum": 0}}},
        "Issues": {
            "type": "object", "required": ["generation", "mode", "issues"],
            "properties": {
                "generation": {"type": "string", "example": "gen-000001"},
                "mode": {"type": "string", "enum": ["dense", "lexical only"]},
                "issues": {"type": "array", "items": {"$ref": _REF + "Issue"}}}},
        "Story": {
            "type": "object",
            "required": ["file", "story", "title", "subtitle", "byline", "url", "generation",
                         "paragraphs"],
            "properties": {
                "file": {"type": "string", "example": FILE_EXAMPLE},
                "story": {"type": "integer", "minimum": 1, "example": 5},
                "title": {**nullable_str, "description": "headline"},
                "subtitle": {**nullable_str},
                "byline": {**nullable_str, "description": "author(s)"},
                "paper": {**nullable_str, "description": "newspaper (报名), if known"},
                "date": {**nullable_str, "format": "date", "description": "issue date, if known"},
                "edition": {**nullable_str, "description": "edition or page (版次), if known"},
                "url": {"type": "string", "description": "the story page (absolute when the "
                        "public URL is configured)"},
                "generation": {"type": "string", "example": "gen-000001"},
                "paragraphs": {"type": "array", "items": {
                    "type": "object", "required": ["paragraph", "text", "lines"],
                    "properties": {
                        "paragraph": {"type": "integer", "minimum": 1},
                        "text": {"type": "string"},
                        "lines": {"type": "array", "items": {"type": "integer"},
                                  "minItems": 2, "maxItems": 2}}}}}},
        "Health": {
            "type": "object", "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "generation": {"type": "string", "example": "gen-000001"},
                "mode": {"type": "string", "enum": ["dense", "lexical only"]},
                "note": {**nullable_str, "description": "why search is lexical only, if it is"},
                "passages": {"type": "integer", "minimum": 0},
                "error": {**nullable_str, "description": "why the index is not (or no longer) "
                          "loaded"},
                "rate_limit": {"type": "string", "description": "how per-client limits are "
                               "counted: 'shared' by every worker, 'off', or 'per worker …' "
                               "when the shared counter store has failed"}}},
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "type", "message"],
                "properties": {
                    "code": {"type": "integer", "description": "the HTTP status"},
                    "type": {"type": "string", "enum": list(ERROR_TYPES.values())},
                    "message": {"type": "string", "description": "what was wrong, for a person"}
                }}}},
    }


def openapi_document(server: str = "/") -> dict:
    """The readers' and chatbots' API; `server` is the configured public URL, or "/"."""
    story_params = [
        {"name": "file", "in": "path", "required": True, "description": "the issue file, from "
         "an answer's citation.file", "schema": {"type": "string"}, "example": FILE_EXAMPLE},
        {"name": "story", "in": "path", "required": True, "description": "the story number "
         "in that issue, from citation.story", "schema": {"type": "integer", "minimum": 1},
         "example": 5},
        {"name": "generation", "in": "query", "required": False,
         "description": "the generation the citing answer named: the story as that generation "
                        "has it, while it is on disk; default the current one",
         "schema": {"type": "string", "pattern": "^gen-[0-9]{6,}$"}, "example": "gen-000001"}]
    return {
        "openapi": "3.0.3",
        "info": _info(
            "Ask a question in Chinese; get the archive's passages that answer it, best first, "
            "each with `short` (the answer itself, e.g. 3个) and a citation to quote "
            "(newspaper, date, edition, headline, byline, paragraph, link). `answerable: "
            "false` means no confident answer: say you do not know. Browsers and scripts may "
            "also GET /api/ask?q=…&top_k=… (same answer; left out here so the API imports as "
            "one ask tool). Editors' upload operations are described separately, in "
            "/openapi-admin.json."),
        "servers": [{"url": server}],
        "paths": {
            "/api/ask": {"post": {
                "operationId": "ask", "summary": "Answer a question from the archive",
                "description": "Searches the newspaper archive for passages that answer the "
                               "question. Use the top answer's `short` as the answer and its "
                               "citation as the source; when `answerable` is false, say the "
                               "archive has no confident answer. Optional filters keep only "
                               "one newspaper or a date range.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": _REF + "AskRequest"},
                    "example": {"question": Q_EXAMPLE, "top_k": 3}}}},
                "responses": {
                    "200": _json("AskResult", "Ranked answers (possibly flagged unanswerable)",
                                 ASK_EXAMPLE),
                    "400": _error("Bad question or parameter: empty or too long, top_k out "
                                  "of range, an unknown field, not JSON", 400,
                                  "unknown field(s) 'topk'; allowed: question, top_k, filters"),
                    "413": _error("Request body over QA_MAX_REQUEST_BYTES", 413,
                                  "request body is over 65536 bytes"),
                    **_COMMON}}},
            "/api/issues": {"get": {
                "operationId": "listIssues", "summary": "List the indexed issues",
                "description": "Every newspaper issue in the archive, with its newspaper, date "
                               "and edition when the editor gave them, and its size.",
                "responses": {"200": _json("Issues", "The indexed issues", {
                    "generation": "gen-000001", "mode": "dense", "issues": [{
                        "file": FILE_EXAMPLE, "issue": "001_83ee49fea69f0aa9",
                        "paper": "台州日报", "date": "2024-07-18", "edition": "第3版",
                        "sha256": "94b9…", "stories": 12, "passages": 48}]}), **_COMMON}}},
            "/api/story/{file}/{story}": {"get": {
                "operationId": "getStory", "summary": "Read one whole story",
                "description": "One story, paragraph by paragraph: take file and story from a "
                               "citation, and generation from the answer to read exactly what "
                               "was cited.",
                "parameters": story_params,
                "responses": {
                    "200": _json("Story", "The story", {
                        "file": FILE_EXAMPLE, "story": 5, "title": "台州玉环创成省级全域旅游示范市",
                        "subtitle": None, "byline": "郭海峰 洪嘉", "paper": "台州日报",
                        "date": "2024-07-18", "edition": "第3版",
                        "url": "/story/001_83ee49fea69f0aa9.txt/5?generation=gen-000001",
                        "generation": "gen-000001",
                        "paragraphs": [{"paragraph": 1, "text": "玉环市现有国家4A级旅游景区3个……",
                                        "lines": [67, 69]}]}),
                    "400": _error("A story number below 1", 400,
                                  "story must be a positive integer"),
                    "404": _error("No such story, or that generation is gone", 404,
                                  "no story 7 in 001_83ee49fea69f0aa9.txt (generation "
                                  "gen-000001)"),
                    **_COMMON}}},
            "/healthz": {"get": {
                "operationId": "health", "summary": "Is the service ready",
                "description": "200 once the index is loaded, with its generation and search "
                               "mode; 503 before (or when it could not be loaded).",
                "responses": {
                    "200": _json("Health", "Ready", {
                        "status": "ok", "generation": "gen-000001", "mode": "dense",
                        "note": None, "passages": 221, "error": None,
                        "rate_limit": "shared"}),
                    "503": _json("Health", "Not ready", {
                        "status": "unavailable",
                        "error": "no index has been built yet: an editor runs `qa index`"})}}},
        },
        "components": {"schemas": _schemas()},
    }


def admin_document(server: str = "/") -> dict:
    """The editors' upload API (bearer token): kept apart so no bot imports it as a tool."""
    schemas = _schemas()
    job_example = {"id": "2f1c…", "status": "done", "files": [
        {"file": "new-issue.txt", "status": "added", "passages": 48}],
        "generation": "gen-000002", "error": None}
    unauthorized = _error("Missing or wrong token", 401, "missing or wrong bearer token")
    return {
        "openapi": "3.0.3",
        "info": _info("Editors add issue files to the archive while it serves (admin is on "
                      "only when QA_ADMIN_TOKEN is set). Not meant for chatbots: the readers' "
                      "API is /openapi.json."),
        "servers": [{"url": server}],
        "paths": {
            "/api/admin/issues": {"post": {
                "operationId": "uploadIssues", "summary": "Add issue files",
                "description": "Upload one or more plain-text issue files; they are ingested "
                               "and indexed off the request path. Poll the returned job.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["files"], "properties": {"files": {
                        "type": "array", "description": "the issue files (UTF-8 text)",
                        "items": {"type": "string", "format": "binary"}}}}}}},
                "responses": {
                    "202": _json("Job", "Accepted; poll the job", {**job_example,
                                                                  "status": "queued",
                                                                  "files": [],
                                                                  "generation": None}),
                    "400": _error("No files", 400, "no files: send multipart/form-data with "
                                  "one or more 'files' parts"),
                    "401": unauthorized,
                    "404": _error("Admin is disabled (QA_ADMIN_TOKEN unset)", 404,
                                  "admin is disabled"),
                    "413": _error("Upload over QA_MAX_UPLOAD_BYTES", 413,
                                  "request body is over 20971520 bytes"), **_COMMON}}},
            "/api/admin/jobs/{job}": {"get": {
                "operationId": "getJob", "summary": "Outcome of an upload job",
                "description": "Each file's outcome: added, unchanged, replaced or rejected "
                               "(with the reason), and the generation published.",
                "security": [{"bearer": []}],
                "parameters": [{"name": "job", "in": "path", "required": True,
                                "description": "the id the upload returned",
                                "schema": {"type": "string"}, "example": "2f1c…"}],
                "responses": {
                    "200": _json("Job", "The job", job_example), "401": unauthorized,
                    "404": _error("No such job", 404, "no such job"), **_COMMON}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": schemas["Error"], "Job": {
                "type": "object", "required": ["id", "status"], "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["queued", "running", "done",
                                                          "failed"]},
                    "files": {"type": "array", "items": {
                        "type": "object", "required": ["file", "status"], "properties": {
                            "file": {"type": "string"},
                            "status": {"type": "string", "description": "added, unchanged, "
                                       "replaced or rejected", "example": "added"},
                            "passages": {"type": "integer"},
                            "reason": {"type": "string", "nullable": True}}}},
                    "generation": {"type": "string", "nullable": True},
                    "error": {"type": "string", "nullable": True}}}},
        },
    }
