"""The `xlsr` command lines that README.md and docs/ show parse with the real parsers, and what they say of them holds."""

import re
import shlex
from pathlib import Path

import pytest

from xlsr.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, command, its comment) for each line of the file's shell code blocks, continuations joined."""
    lines, found, in_block, shell = path.read_text(encoding="utf-8").splitlines(), [], False, False
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if line.startswith("```"):
            in_block, shell = not in_block, line.strip() in ("```", "```bash", "```sh")
            continue
        if not (in_block and shell):
            continue
        while line.rstrip().endswith("\\") and i < len(lines):
            line, i = line.rstrip()[:-1] + " " + lines[i].strip(), i + 1
        if line.lstrip().startswith("#"):  # a comment line
            command, comment = "", line.lstrip()
        else:
            command, _, comment = re.split(r"(\s+#\s)", line, maxsplit=1) if re.search(r"\s+#\s", line) else (line, "", "")
        found.append((number, command.strip(), comment))
    return found


def _xlsr_argv(command: str) -> list[str] | None:
    """The arguments after `xlsr` (or `-m xlsr.cli.main`) in a shell line; None for a line that runs no xlsr command
    or is a synopsis (`...`)."""
    if not command or "..." in command:
        return None
    for part in command.split(" | "):
        match = re.match(r"^(?:.*\s)?(?:xlsr|-m xlsr\.cli\.main)\s+(.*)$", part.strip())
        if match and not part.strip().startswith(("python", "pip")):
            text = re.sub(r"\[([^\]]*)\]", r"\1", match.group(1))  # optional parts: given
            return shlex.split(re.sub(r"\$\w+", "1", text))  # shell variables ($w): a number
    return None


COMMANDS = [(path.relative_to(ROOT).as_posix(), number, argv)
            for path in DOCS for number, command, _ in _code_lines(path)
            if (argv := _xlsr_argv(command)) is not None]


def test_the_docs_show_xlsr_commands_to_check():
    files = {name for name, _, _ in COMMANDS}
    assert {"README.md", "docs/importing.md", "docs/transcription.md", "docs/distributed.md"} <= files
    assert sum(name == "README.md" for name, _, _ in COMMANDS) > 20 and len(COMMANDS) > 40


@pytest.mark.parametrize("name, number, argv", COMMANDS, ids=[f"{n}:{line}" for n, line, _ in COMMANDS])
def test_a_documented_command_line_parses(name, number, argv, capsys):
    try:
        build_parser(argv).parse_args(argv)
    except SystemExit:
        pytest.fail(f"{name}:{number}: xlsr {shlex.join(argv)}: {capsys.readouterr().err.strip().splitlines()[-1]}")


def test_the_readme_says_the_decoding_commands_device_default_as_the_parsers_have_it():
    defaults = {command: build_parser([command]).parse_args([command, *required])
                for command, required in (("transcribe", ["--model", "m", "--out", "o", "a.wav"]),
                                          ("stream", ["--model", "m", "-"]),
                                          ("evaluate", ["--model", "m", "--manifest", "m.jsonl"]))}
    assert {command: args.device for command, args in defaults.items()} == dict.fromkeys(defaults, "auto")
    said = [comment for _, _, comment in _code_lines(ROOT / "README.md")
            if "transcribe, stream and evaluate" in comment]
    assert said and all("--device auto" in comment and "CPU unless" not in comment for comment in said), said


def test_the_readme_workflow_gives_each_run_folder_one_model_or_says_the_line_replaces_the_one_above():
    # a second `xlsr pretrain` into a run folder with another recipe or preset is refused as a resume of another
    # model; a reader who runs the lines in order must be told which lines are alternatives
    seen: dict[str, tuple] = {}
    for number, command, comment in _code_lines(ROOT / "README.md"):
        argv = _xlsr_argv(command)
        if not argv or argv[0] not in ("pretrain", "finetune") or "--out" not in argv:
            continue
        out = argv[argv.index("--out") + 1]
        model = tuple(argv[argv.index(key) + 1] if key in argv else None for key in ("--recipe", "--preset", "--init"))
        if out in seen and seen[out] != model:
            assert "instead" in comment, f"README.md:{number}: a second model into {out} without saying 'instead'"
        seen[out] = model
