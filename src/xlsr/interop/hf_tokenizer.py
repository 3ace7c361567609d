"""The tokenizer and preprocessor files of a Hugging Face wav2vec2 directory: reading a CTC vocabulary, writing ours.

vocab.json maps token → id (for MMS, language → {token → id}), added_tokens.json (or, saved without it,
tokenizer_config.json's added_tokens_decoder) the tokens added past it; the unk token is named in
special_tokens_map.json or tokenizer_config.json. HF's CTC blank is its pad token; ours is `<blank>`.
"""

from __future__ import annotations

from pathlib import Path

from xlsr.errors import CheckpointError
from xlsr.interop.adapters import language_vocab
from xlsr.interop.native import read_json
from xlsr.interop.safe_pickle import clip
from xlsr.rates import SAMPLE_RATE
from xlsr.text.vocab import BLANK, UNK, WORD_BOUNDARY


def read_hf_vocab(dir: Path, size: int, lang: str | None = None) -> tuple[list[str], int | None] | None:
    """(tokens by id from vocab.json (its `lang` table for MMS) and the added tokens (_added_tokens), placed by id,
    id of unk or None); None without vocab.json.
    A tokenizer whose word delimiter is not `|` has it renamed `|`, the word boundary decoding and scoring read;
    one with do_lower_case has its tokens lower-cased (see _lower_cased)."""
    vocab_path = dir / "vocab.json"
    if not vocab_path.is_file():
        return None
    token_to_id = _ids(language_vocab(vocab_path, lang), vocab_path)
    by_id = {i: t for t, i in token_to_id.items()}
    added, added_path = _added_tokens(dir, lang)
    for token, i in added:
        # added tokens past the head's rows (transformers' <s>, </s> of a tokenizer saved beside a head without
        # them) are never output by the model: left out, as transformers' model ignores them
        if i >= size or by_id.get(i) == token:
            continue
        # a clash transformers resolves one way when it decodes and another when it encodes: refused
        if i in by_id:
            raise CheckpointError(f"{added_path}: added token {token!r} has id {i}, but so has {by_id[i]!r}")
        if token in by_id.values():
            held = next(j for j, t in by_id.items() if t == token)
            raise CheckpointError(f"{added_path}: added token {token!r} has id {i}, but also id {held}")
        by_id[i] = token
    if sorted(by_id) != list(range(len(by_id))):
        gap = min(set(range(len(by_id))) - set(by_id))
        named = vocab_path if added_path is None else f"{vocab_path} with {added_path.name}"
        raise CheckpointError(f"{named}: no token has id {gap}; token ids are not 0..{len(by_id) - 1} without gaps")
    tokens = [by_id[i] for i in range(len(by_id))]
    if len(tokens) != size:
        raise CheckpointError(f"{vocab_path}: {len(tokens)} tokens but lm_head has {size} rows")
    unk = _special_token(dir, "unk_token") or UNK  # transformers' default when the tokenizer files name none
    delimiter = _special_token(dir, "word_delimiter_token")
    if delimiter and delimiter != WORD_BOUNDARY and delimiter in tokens and WORD_BOUNDARY not in tokens:
        tokens[tokens.index(delimiter)] = WORD_BOUNDARY  # the tokenizer's own word delimiter is our `|`
    if _do_lower_case(dir):
        tokens = _lower_cased(dir, tokens)
    odd = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if odd:
        raise CheckpointError(f"{vocab_path}: token {odd[0]!r} is empty or holds whitespace, which labels cannot "
                              f"name (a space is the word delimiter, {WORD_BOUNDARY!r})")
    return tokens, (tokens.index(unk) if unk in tokens else None)


def _added_tokens(dir: Path, lang: str | None) -> tuple[list[tuple[str, int]], Path | None]:
    """(the tokens added to the vocabulary, by id, and the file naming them): added_tokens.json (token -> id), else
    tokenizer_config.json's added_tokens_decoder (id -> {"content": token}), which a tokenizer may be saved with
    alone. That one also lists the special tokens vocab.json has; an MMS directory's lists those of the language it
    was saved with, whose ids another language's vocabulary gives to its own tokens: not read for a language."""
    path = dir / "added_tokens.json"
    if path.is_file():
        return sorted(_ids(read_json(path), path).items(), key=lambda item: item[1]), path
    path = dir / "tokenizer_config.json"
    decoder = read_json(path).get("added_tokens_decoder") if path.is_file() and lang is None else None
    if decoder is None:
        return [], None
    if not isinstance(decoder, dict):
        raise CheckpointError(f"{path}: added_tokens_decoder is {type(decoder).__name__}, expected an object of "
                              f"id -> token")
    added = []
    for key, entry in decoder.items():
        token = entry.get("content") if isinstance(entry, dict) else None
        if not (key.isascii() and key.isdigit()) or not isinstance(token, str):
            raise CheckpointError(f"{path}: added_tokens_decoder entry {key!r}: {clip(repr(entry))}, expected an id "
                                  f"-> {{\"content\": token}}")
        added.append((token, int(key)))
    return sorted(added, key=lambda item: item[1]), path


def _ids(token_to_id: dict, path: Path) -> dict[str, int]:
    """`token_to_id` checked: every id an integer (JSON true/false are not ids), else one line naming `path`."""
    for token, i in token_to_id.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise CheckpointError(f"{path}: token {token!r} has id {i!r}, expected an integer")
    return token_to_id


def _do_lower_case(dir: Path) -> bool:
    """tokenizer_config.json's do_lower_case; Wav2Vec2PhonemeCTCTokenizer keeps the key but never reads it."""
    path = dir / "tokenizer_config.json"
    config = read_json(path) if path.is_file() else {}
    value = config.get("do_lower_case", False)
    if not isinstance(value, bool):
        raise CheckpointError(f"{path}: do_lower_case={value!r}, expected true or false")
    return value and config.get("tokenizer_class") != "Wav2Vec2PhonemeCTCTokenizer"


def _lower_cased(dir: Path, tokens: list[str]) -> list[str]:
    """Tokens as a do_lower_case tokenizer reads and writes text: transformers' Wav2Vec2CTCTokenizer upper-cases
    text before looking it up (so the vocabulary is upper case) and lower-cases its decoded transcripts. Our
    labels are looked up as written and transcripts are the tokens joined, so the same behaviour is lower-case
    tokens. Special tokens keep their names, as in transformers, which matches them as written before it
    upper-cases the rest of a text ("NOISE" is that token, "noise" the letters N O I S E), and picks the pad
    (blank) and word delimiter out of a transcript by name before it lower-cases it: those the tokenizer files name
    (pad, unk, bos, eos and the word delimiter, `UNK` as well as `<unk>`; the additional/extra special tokens;
    added tokens marked special), and any <…>/[…]. Their transcripts differ in case only: transformers' decode
    lower-cases them with the rest. The blank and unk are renamed ours anyway; a word delimiter other than `|` was
    renamed `|` unless the vocabulary has a `|` of its own."""
    named = {_special_token(dir, n) for n in ("pad_token", "unk_token", "bos_token", "eos_token",
                                               "word_delimiter_token")} | _listed_special_tokens(dir)
    lowered = [t if t in named or _is_special(t) else t.lower() for t in tokens]
    merged = sorted({t for t in lowered if lowered.count(t) > 1})
    if merged:
        raise CheckpointError(f"{dir / 'tokenizer_config.json'}: do_lower_case is true but vocab.json has tokens "
                              f"that differ only in case: {', '.join(repr(t) for t in merged[:8])}")
    return lowered


def _special_token(dir: Path, name: str) -> str | None:
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        path = dir / fname
        if path.is_file():
            value = read_json(path).get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return None


def _listed_special_tokens(dir: Path) -> set[str]:
    """The special tokens the tokenizer files list besides the named ones: `additional_special_tokens` (transformers
    4), `extra_special_tokens` (5; a list, or a dict of named ones), and the entries of tokenizer_config.json's
    `added_tokens_decoder` marked special. Each a string or {"content": ...}; anything else names nothing."""
    listed = []
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        path = dir / fname
        config = read_json(path) if path.is_file() else {}
        for key in ("additional_special_tokens", "extra_special_tokens"):
            value = config.get(key)
            listed += value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            listed += [t for t in decoder.values() if isinstance(t, dict) and t.get("special") is True]
    contents = (t.get("content") if isinstance(t, dict) else t for t in listed)
    return {t for t in contents if isinstance(t, str)}


def _is_special(token: str) -> bool:
    return len(token) > 1 and ((token[0] == "<" and token[-1] == ">") or (token[0] == "[" and token[-1] == "]"))


def _is_phone_vocab(tokens: list[str]) -> bool:
    # Phone inventories have multi-character symbols (aː, tʃ); character vocabularies do not.
    return any(len(t) > 1 for t in tokens if not _is_special(t))


def hf_tokenizer_files(tokens: list[str], kind: str | None = None) -> dict[str, dict]:
    """vocab.json, tokenizer_config.json, special_tokens_map.json for our tokens (the blank becomes the pad token)."""
    # HF's CTC blank is its pad token: call it <pad> unless that name is taken (fairseq vocabularies have one).
    pad = next((n for n in ("<pad>", "[PAD]", BLANK) if n not in tokens[1:]), None)
    if pad is None:
        raise CheckpointError(f"vocabulary: '<pad>', '[PAD]' and {BLANK!r} are all regular tokens; no name for the blank")
    hf_tokens = [pad] + list(tokens[1:])
    if len(set(hf_tokens)) != len(hf_tokens):
        raise CheckpointError("vocabulary: duplicate tokens")
    special = {"pad_token": pad, "unk_token": UNK if UNK in hf_tokens else None}
    special = {k: v for k, v in special.items() if v is not None}
    tokenizer = {
        "unk_token": special.get("unk_token"),
        "pad_token": pad,
        "bos_token": None,
        "eos_token": None,
        "word_delimiter_token": WORD_BOUNDARY if WORD_BOUNDARY in hf_tokens else None,
        # Our labels are matched as written (a do_lower_case vocabulary was lower-cased on import), so is this.
        "do_lower_case": False,
        # Transcripts as the tokens join: unset, transformers before 4.45 "cleans up" its decoded text (" ." -> ".",
        # " ?" -> "?", " 's" -> "'s"), which rewrites phones such as "." and text such as French "va ?".
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000,
    }
    if kind == "phones" or (kind is None and _is_phone_vocab(hf_tokens)):
        # Space-separated phone symbols; the tokenizer must not try to phonemize text itself.
        tokenizer.update(tokenizer_class="Wav2Vec2PhonemeCTCTokenizer", do_phonemize=False,
                         phone_delimiter_token=" ", phonemizer_lang="und", phonemizer_backend="espeak")
    else:
        tokenizer.update(tokenizer_class="Wav2Vec2CTCTokenizer", replace_word_delimiter_char=" ")
    return {
        "vocab.json": {t: i for i, t in enumerate(hf_tokens)},
        "tokenizer_config.json": tokenizer,
        "special_tokens_map.json": special,
    }


def hf_preprocessor_config(cfg) -> dict:
    """preprocessor_config.json: z-normalisation as the model expects; attention masks for layer-norm models only."""
    return {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": SAMPLE_RATE,
        "padding_value": 0.0,
        "padding_side": "right",
        "do_normalize": bool(cfg.normalize_waveform),
        # transformers' group-norm CNN normalises over the padded row whatever the mask (spec §11 #6), and its
        # convention is to feed such models unpadded, maskless batches; xlsr itself honours lengths in both modes.
        "return_attention_mask": cfg.extractor_mode == "layer_norm",
        "processor_class": "Wav2Vec2Processor",
    }
