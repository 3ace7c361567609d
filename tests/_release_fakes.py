"""Stand-ins for the `xlsr` commands a release build runs (`released.build.run_xlsr`), shared by the release tests:
each writes what the build reads next."""

import json
from pathlib import Path


def fake_command(args: list[str]) -> tuple[Path, dict[str, str]]:
    """The command's output folder (`--out`, else its first argument) and its `--option value` pairs."""
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path(args[1])
    return out, {k: args[i + 1] for i, k in enumerate(args[:-1]) if k.startswith("--")}


def fake_synth(out: Path, value: dict[str, str], seconds: dict[str, float]) -> None:
    """What `xlsr synth` leaves: OUT/synth.json with the corpus settings and `seconds` of audio per split and
    language, and each language's (empty) manifests."""
    langs = value["--langs"].split(",")
    out.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (out / lang).mkdir(exist_ok=True)
        for split in ("train", "dev", "test"):
            (out / lang / f"{split}.jsonl").write_text("")
    (out / "synth.json").write_text(json.dumps({
        "seed": int(value["--seed"]), "utts_per_lang": int(value["--utts-per-lang"]),
        "languages": {lang: {} for lang in langs}, "augment": value["--augment"], "voices": value["--voices"],
        "speakers_per_lang": int(value["--speakers-per-lang"]),
        "summary": {"seconds": {lang: dict(seconds) for lang in langs}}}))
