"""Language codes for manifests: what corpora write (`en`, `af_za`, `eng`, `English`, `Cantonese`) -> one BCP-47 tag.

lhotse's recipes and the Hub's datasets name languages in several ways (Common Voice: `zh-CN`, `nan-tw`; FLEURS:
`af_za`; MLS: `english`; BABEL: `Cantonese`). A manifest folder is named by its code, so they are brought to the
shortest standard tag (`zh-CN`, `af-ZA`, `en`, `yue`) that langcodes gives, with one exception: a code already
written as a tag keeps the casing of its region (`nan-tw` stays `nan-tw`), as the Common Voice importer keeps its
locales, so that one corpus gets one folder through every importer. A well-formed code langcodes does not know
(Common Voice's `tok`, Toki Pona) is kept as it is, with a warning.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import langcodes

from xlsr.errors import XlsrError

log = logging.getLogger(__name__)

_ISO_639 = re.compile(r"([A-Za-z]{2,3})(?:-([A-Za-z]{2}|[0-9]{3}))?")  # a language, optionally its region


@lru_cache(maxsize=4096)
def language_code(value: str) -> str:
    """A language tag or an English language name -> its standard tag; XlsrError when it is neither."""
    text = value.strip()
    tag = text.replace("_", "-")
    if tag and langcodes.tag_is_valid(tag):
        standard = langcodes.standardize_tag(tag)
        if "_" not in text and standard.lower() == tag.lower():  # only the casing differs: keep the given subtags
            language, _, rest = standard.partition("-")
            return language + tag[len(language):] if rest else language
        return standard
    code = _ISO_639.fullmatch(tag)
    if code:
        kept = code.group(1).lower() + (f"-{code.group(2)}" if code.group(2) else "")
        log.warning("language %r: a code langcodes does not know; kept as %r", value, kept)
        return kept
    try:
        return langcodes.find(text).to_tag()
    except ModuleNotFoundError as exc:  # langcodes looks names up in the language_data package
        raise XlsrError(f"language {value!r}: reading language names needs {exc.name}: "
                        f"pip install 'xlsr[import]'") from None
    except LookupError:
        raise XlsrError(f"language {value!r} is neither a language code nor a known language name") from None
