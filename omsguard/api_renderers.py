"""The REST API's JSON renderer, which does not fail on text that UTF-8 cannot encode.

DRF's JSONRenderer writes non-ASCII characters as they are (UNICODE_JSON) and then encodes
the document as UTF-8. A lone surrogate (U+D800 to U+DFFF outside a pair) has no UTF-8
form. One can reach a response in an echoed key, or in a row stored before the input checks
rejected it. Encoding it then raises UnicodeEncodeError, and the response becomes a 500.
"""

from rest_framework import renderers


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSONRenderer, falling back to ASCII escapes when UTF-8 encoding fails.

    Only a document that cannot be encoded is rendered again with ensure_ascii, so every other
    response keeps its bytes. The fallback writes a lone surrogate as the escape "\\ud800",
    which is valid JSON, though a client that decodes strictly may still reject the string.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)
