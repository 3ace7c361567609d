#!/usr/bin/env bash
# Put fairseq 0.12.2 (the last release, which published wav2vec 2.0 / XLSR / XLS-R checkpoints were
# written with) where the tests can import it, in tools/fairseq-ref (idempotent). Nothing of it is
# installed into .venv: tests/interop/fairseq_reference_check.py runs it in a process of its own.
#
# The versions fairseq 0.12.2 pins: hydra-core 1.0.7 and omegaconf 2.0.6. Current pip refuses
# omegaconf 2.0.6's metadata ("PyYAML (>=5.1.*)"), so its wheel and fairseq's source archive are
# fetched from PyPI by URL, checked against their sha256, and unpacked; fairseq's C++/Cython
# extensions are not built (wav2vec 2.0 needs none of them).
#
# Environment: FAIRSEQ_REF (default <repo>/tools/fairseq-ref), PYTHON (default the repo's .venv python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${FAIRSEQ_REF:-$ROOT/tools/fairseq-ref}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
say() { echo "fairseq_reference: $*" >&2; }

if [[ -f "$DEST/.complete" ]]; then
  say "found $DEST; nothing to do"
  exit 0
fi
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial/site"

say "installing fairseq 0.12.2's pinned dependencies into $DEST"
"$PYTHON" -m pip install --quiet --no-deps --target "$DEST.partial/site" \
  hydra-core==1.0.7 antlr4-python3-runtime==4.8 bitarray==3.12.3 sacrebleu==2.6.0 \
  portalocker==4.4.2 colorama==0.4.6 lxml==6.2.0 tabulate==0.9.0

"$PYTHON" - "$DEST.partial" <<'EOF'
import hashlib, io, sys, tarfile, urllib.request, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
FILES = {  # url: sha256 (PyPI's files)
    "https://files.pythonhosted.org/packages/d0/eb/9d63ce09dd8aa85767c65668d5414958ea29648a0eec80a4a7d311ec2684/"
    "omegaconf-2.0.6-py3-none-any.whl": "9e349fd76819b95b47aa628edea1ff83fed5b25108608abdd6c7fdca188e302a",
    "https://files.pythonhosted.org/packages/30/36/db42846570f479ac859be3b48d8b47f2ae9b0b9c77487a512f2f2ecbcb6b/"
    "fairseq-0.12.2.tar.gz": "34f1b18426bf3844714534162f065ab733e049597476daa35fffb4d06a92b524",
}
for url, sha in FILES.items():
    with urllib.request.urlopen(url, timeout=180) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha:
        sys.exit(f"fairseq_reference: {url}: sha256 differs from the pinned one; not using it")
    if url.endswith(".whl"):
        zipfile.ZipFile(io.BytesIO(data)).extractall(dest / "site")
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(dest, filter="data")
EOF
mv "$DEST.partial/fairseq-0.12.2" "$DEST.partial/fairseq"
touch "$DEST.partial/.complete"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
say "ready: $DEST"
