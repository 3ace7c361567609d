"""Language codes for manifests: what corpora write (`en`, `af_za`, `eng`, `English`, `Cantonese`) -> one BCP-47 tag.

lhotse's recipes and the Hub's datasets name languages in several ways (Common Voice: `zh-CN`; FLEURS:
`af_za`; MLS: `english`; BABEL: `Cantonese`). A manifest folder is named by its code, so they are brought
to the shortest standard tag (`zh-CN`, `af-ZA`, `en`, `yue`) that langcodes gives.
"""

from __future__ import annotations

from functools import lru_cache

import langcodes

from xlsr.errors import XlsrError


@lru_cache(maxsize=4096)
def language_code(value: str) -> str:
    """A language tag or an English language name -> its standard tag; XlsrError when it is neither."""
    text = value.strip()
    tag = text.replace("_", "-")
    if tag and langcodes.tag_is_valid(tag):
        return langcodes.standardize_tag(tag)
    try:
        return langcodes.find(text).to_tag()
    except ModuleNotFoundError as exc:  # langcodes looks names up in the language_data package
        raise XlsrError(f"language {value!r}: reading language names needs {exc.name}: "
                        f"pip install 'xlsr[import]'") from None
    except LookupError:
        raise XlsrError(f"language {value!r} is neither a language code nor a known language name") from None
