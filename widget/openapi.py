"""The OpenAPI description of the public API, served at /openapi.json.

The fuzz tests generate requests from it and check every response against it, so it must list
every status each operation can answer.
"""

from __future__ import annotations

from . import __version__
from .reactions import (
    CONTROL_RANGES,
    MAX_ARTICLE_LENGTH,
    MAX_BATCH_ARTICLES,
    MAX_READER_LENGTH,
    MAX_TITLE_INPUT_LENGTH,
    MAX_TITLE_LENGTH,
    MAX_URL_LENGTH,
    MIN_READER_LENGTH,
    SET_NAME,
    SET_STYLES,
)
from .svg import THEMES

# Text without control characters, with at least one character that is not a space: what
# the server keeps of an article id once trimmed.
ARTICLE_ID = {
    "type": "string",
    "maxLength": MAX_ARTICLE_LENGTH,
    "pattern": f"^[^{CONTROL_RANGES}]*[^\\s{CONTROL_RANGES}][^{CONTROL_RANGES}]*$",
    "description": "The article's id or canonical URL, trimmed; a URL loses its fragment, and "
    "its scheme and host are lowercased",
    "example": "first-post",
}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


SITE = {
    "name": "site",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$", "example": "demo"},
}
ARTICLE = {
    "name": "article",
    "in": "query",
    "required": True,
    "schema": ARTICLE_ID,
}
SET_NAME_PATTERN = SET_NAME.pattern
REACTION_SET = {
    "name": "set",
    "in": "query",
    "required": False,
    "description": "One of the site's named reaction sets (e.g. `thumbs`); absent or empty: "
    "the default set. A set the site lacks is a 400.",
    "schema": {"type": "string", "pattern": f"^({SET_NAME_PATTERN})?$", "example": "thumbs"},
}
UNAVAILABLE = _error("Redis is unreachable; see Retry-After")
READ_ERRORS = {
    "400": _error("A parameter is missing or invalid"),
    "403": _error("The site is not registered"),
    # gunicorn refuses a request line over 4,094 bytes before the app sees it.
    "414": _error("The request line is too long: ask for fewer or shorter articles"),
    "503": UNAVAILABLE,
}


READER_TOKEN = {
    "name": "X-Reader-Token",
    "in": "header",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]+$",
        "minLength": MIN_READER_LENGTH,
        "maxLength": MAX_READER_LENGTH,
    },
}
OWN_ERRORS = {
    "400": _error("A parameter or the token is missing or invalid, or the token is in the URL"),
    "403": _error("Unknown site, or an origin the site does not allow"),
    "429": _error("Too many reads or erases from this network; see Retry-After"),
    "503": UNAVAILABLE,
}


def batch_items(name: str, items: dict) -> dict:
    """A repeated, optional query parameter of the batch read (`?name=a&name=b`)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH_ARTICLES,
            "items": items,
        },
    }


def document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "reactions",
            "version": __version__,
            "description": "Emoji reactions for articles: read counts, set a reader's reaction.",
        },
        "paths": {
            "/api/v1/reactions": {
                "get": {
                    "operationId": "getReactions",
                    "summary": "Counts and percentages of one article",
                    "description": "In the default reaction set, or with `set` in one of the "
                    "site's named sets, whose body then says so (`set`, `style`).",
                    "parameters": [SITE, ARTICLE, REACTION_SET],
                    "responses": {
                        "200": _json("The article's reactions in the site's order", "Counts"),
                        "304": {"description": "Not modified since the ETag sent"},
                        **READ_ERRORS,
                    },
                },
                "post": {
                    "operationId": "setReaction",
                    "summary": "Set, change or take back a reader's reaction",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Vote"}}
                        },
                    },
                    "responses": {
                        "200": _json("The article's reactions after the change", "VoteResult"),
                        "400": _error("A field is missing or invalid"),
                        "403": _error("Unknown site, or an origin the site does not allow"),
                        "413": _error("The body is too large"),
                        "415": _error("The body is not application/json"),
                        "429": _error("Too many reactions; see Retry-After"),
                        "503": UNAVAILABLE,
                    },
                },
            },
            "/api/v1/reactions/batch": {
                "get": {
                    "operationId": "getReactionsBatch",
                    "summary": "Counts of several articles of one site, in any of its sets",
                    "description": "Every bar of a page in one request: `article` (repeated) "
                    "for the default set's articles, `set_article` (repeated) for a named "
                    "set's, as the set's name, `:` and the article id (a set's name has no "
                    "`:`, so the first one ends it and the id may hold any character). At "
                    f"least one item and at most {MAX_BATCH_ARTICLES} in all, both parameters "
                    "and repeats counted. The answer keys each body as asked: the default "
                    "set's under `articles`, a named set's under `sets` and its name.",
                    "parameters": [
                        SITE,
                        batch_items("article", ARTICLE_ID),
                        batch_items(
                            "set_article",
                            {
                                "type": "string",
                                "maxLength": 33 + MAX_ARTICLE_LENGTH,
                                "pattern": f"^{SET_NAME_PATTERN}:" + ARTICLE_ID["pattern"][1:],
                                "example": "thumbs:first-post",
                            },
                        ),
                    ],
                    "responses": {
                        "200": _json("Each article's reactions, keyed as asked", "Batch"),
                        "304": {"description": "Not modified since the ETag sent"},
                        **READ_ERRORS,
                    },
                },
            },
            "/api/v1/reactions.svg": {
                "get": {
                    "operationId": "getReactionsImage",
                    "summary": "Counts and percentages of one article as an SVG image",
                    "description": "For readers without JavaScript (`<noscript>`, feeds, "
                    "e-mail): the site's reactions with emoji, labels and the percentages of "
                    "getReactions, at a size fixed by the number of reactions; a set of the "
                    "compact style shows counts. Errors are JSON.",
                    "parameters": [
                        SITE,
                        ARTICLE,
                        REACTION_SET,
                        {
                            "name": "theme",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(THEMES)},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The image, with an accessible title and "
                            "description of the figures",
                            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                        },
                        "304": {"description": "Not modified since the ETag sent"},
                        **READ_ERRORS,
                    },
                }
            },
            "/api/v1/stream": {
                "get": {
                    "operationId": "streamReactions",
                    "summary": "Live counts of one article as Server-Sent Events",
                    "description": "Each `counts` event carries the same body as "
                    "getReactions: first at once, then whenever the counts or the site's "
                    "reaction set change. The stream ends after 15 minutes; heartbeat "
                    "comments every 15 s. With `set`, the named set's counts only.",
                    "parameters": [SITE, ARTICLE, REACTION_SET],
                    "responses": {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **READ_ERRORS,
                        "429": _error(
                            "Too many streams from this client or in this process; poll "
                            "getReactions instead (see Retry-After)"
                        ),
                        "503": _error(
                            "Redis is unreachable, or this process has lost its live "
                            "subscription (`live_unavailable`): poll getReactions (see "
                            "Retry-After)"
                        ),
                    },
                }
            },
            "/api/v1/me": {
                "get": {
                    "operationId": "getOwnReactions",
                    "summary": "The reactions a reader has given on a site",
                    "description": "Only from the site's allowed origins (Origin header). "
                    "The reader's token goes in the X-Reader-Token header; one in the URL is "
                    "refused. Every reaction set of the site, or only `set`'s.",
                    "parameters": [
                        SITE,
                        {**REACTION_SET, "description": "Only this set's; absent: every set's"},
                        READER_TOKEN,
                    ],
                    "responses": {
                        "200": _json("Every reaction the reader has on the site", "Own"),
                        **OWN_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "eraseOwnReactions",
                    "summary": "Take back every reaction a reader has given on a site",
                    "description": "Each reaction set's erase is one atomic step with its "
                    "counts, the sets one after another. Without `article`: every set's (or "
                    "only `set`'s); with `article`, only that article's reaction in `set` "
                    "(absent: the default set).",
                    "parameters": [
                        SITE,
                        {**ARTICLE, "required": False},
                        {
                            **REACTION_SET,
                            "description": "The set to take back from; absent: every set, "
                            "or with `article` the default set",
                        },
                        READER_TOKEN,
                    ],
                    "responses": {
                        "200": _json("The reactions taken back", "Own"),
                        **OWN_ERRORS,
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "The process answers; says whether Redis does",
                    "responses": {"200": _json("Up", "Status")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Redis answers",
                    "responses": {"200": _json("Ready", "Status"), "503": UNAVAILABLE},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string"},
                        "redis": {"type": "string", "enum": ["ok", "unreachable"]},
                    },
                },
                "Reaction": {
                    "type": "object",
                    "required": ["id", "emoji", "label", "count", "percent"],
                    "properties": {
                        "id": {"type": "string"},
                        "emoji": {"type": "string"},
                        "label": {"type": "string"},
                        "count": {"type": "integer", "minimum": 0},
                        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                },
                "Counts": {
                    "type": "object",
                    "required": ["site", "article", "total", "reactions"],
                    "properties": {
                        "site": {"type": "string"},
                        "set": {
                            "type": "string",
                            "description": "The named reaction set (absent: the default set)",
                        },
                        "style": {
                            "type": "string",
                            "enum": list(SET_STYLES),
                            "description": "A named set's: `count` is the compact style, "
                            "counts shown instead of percentages",
                        },
                        "article": {"type": "string"},
                        "total": {"type": "integer", "minimum": 0},
                        "reactions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Reaction"},
                        },
                    },
                },
                "VoteResult": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Counts"},
                        {
                            "type": "object",
                            "required": ["mine", "counted"],
                            "properties": {
                                "mine": {"type": "string", "nullable": True},
                                "counted": {"type": "boolean"},
                            },
                        },
                    ]
                },
                "Batch": {
                    "type": "object",
                    "required": ["articles"],
                    "properties": {
                        "articles": {
                            "type": "object",
                            "additionalProperties": {"$ref": "#/components/schemas/Counts"},
                        },
                        "sets": {
                            "type": "object",
                            "description": "Only when `set_article` was asked: by set, "
                            "each article's body keyed as asked",
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": {"$ref": "#/components/schemas/Counts"},
                            },
                        },
                    },
                },
                "Own": {
                    "type": "object",
                    "required": ["site", "reactions"],
                    "properties": {
                        "site": {"type": "string"},
                        "reactions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["article", "reaction", "url", "title", "set"],
                                "properties": {
                                    "set": {
                                        "type": "string",
                                        "description": "The reaction set ('': the default)",
                                    },
                                    "article": {"type": "string"},
                                    "reaction": {"type": "string"},
                                    "url": {"type": "string"},
                                    "title": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Vote": {
                    "type": "object",
                    "required": ["site", "article", "reader", "reaction"],
                    "properties": {
                        "site": SITE["schema"],
                        "set": {
                            **REACTION_SET["schema"],
                            "nullable": True,
                            "description": REACTION_SET["description"],
                        },
                        "article": ARTICLE["schema"],
                        "reader": {
                            "type": "string",
                            "pattern": "^[A-Za-z0-9_-]+$",
                            "minLength": MIN_READER_LENGTH,
                            "maxLength": MAX_READER_LENGTH,
                        },
                        "reaction": {"type": "string", "nullable": True, "example": "happy"},
                        "url": {
                            "type": "string",
                            "nullable": True,
                            "maxLength": MAX_URL_LENGTH,
                            "pattern": f"^([hH][tT][tT][pP][sS]?://[^{CONTROL_RANGES}]*)?$",
                            "description": "The page's http(s) URL, or empty; kept as the "
                            "article's link only when its origin is one the site allows",
                        },
                        "title": {
                            "type": "string",
                            "nullable": True,
                            "maxLength": MAX_TITLE_INPUT_LENGTH,
                            "description": "The page's title, stored with control characters "
                            "and runs of white space as one space, shortened to "
                            f"{MAX_TITLE_LENGTH} characters",
                        },
                    },
                },
            }
        },
    }
