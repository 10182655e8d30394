"""The default redactor for `capture = "redacted"`: masks personal data and secrets in captured text.

Pattern-based, so it errs towards masking (a long number is masked as a possible card). The server may
pass a better one (for instance guard/'s PII detector) as `Tracer(redactor=...)`.
"""

from __future__ import annotations

import re

# Order matters: secrets and e-mails before the generic long-number rule eats their digits.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:sk|pk|rk|ossgate)[-_][A-Za-z0-9_-]{8,}\b"), "[SECRET]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{8,}=*"), "Bearer [SECRET]"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[EMAIL]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[SSN]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[IP]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d\b"), "[PHONE]"),
]


def redact(text: str) -> str:
    """Return `text` with e-mails, phone numbers, card numbers, SSNs, IP addresses and API keys masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
