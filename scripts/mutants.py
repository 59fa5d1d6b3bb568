#!/usr/bin/env python3
"""Mutation check: put plausible one-line bugs into a copy of the code, one at a time, and
see whether the tests named for each bug catch it ("killed") or not ("survived").

    .venv/bin/python scripts/mutants.py                 # every mutation, table on stdout
    .venv/bin/python scripts/mutants.py -k resume       # mutations whose name contains "resume"
    .venv/bin/python scripts/mutants.py --list          # names, files, anchors, tests
    .venv/bin/python scripts/mutants.py --check-anchors # seconds: every anchor still found
    .venv/bin/python scripts/mutants.py --markdown out.md

How it works. The tracked and untracked (not ignored) files of this checkout are copied to a
temporary folder; a second folder holds one symlink per installed package name
(gifsent_infer -> copy/gifsent_infer, gifsent_train -> copy/train, ... read from
pyproject.toml's package-dir), and PYTHONPATH points at it. PYTHONPATH entries are searched
before the editable install's finder, so the tests (and the console scripts and Ray workers
they start, which inherit the environment) import the copy, never this checkout; the script
checks that before it starts. Each mutation is found by a regular expression on the code
(not a line number), applied to the copy, compiled, and the tests declared for it run with
`pytest -x`; then the file is restored. An anchor that matches nothing (or more often than
declared) is reported as "anchor gone: ..." and makes the exit status 1, so a refactoring that
moves the code cannot quietly turn a mutation into a no-op: every run checks all the selected
anchors (and that each mutant compiles and its named tests exist) before it copies anything,
and `--check-anchors` does only that, in seconds. The test suite does not guard these
anchors (a line's text is not behaviour); this script does, when it runs. The named tests first run once
unmutated (the baseline): a test that fails without any mutation would "kill" everything.

Exit status: 0 when every selected mutation is killed; 1 when one survived, was not found,
did not compile, or the baseline failed; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str  # what the bug breaks, in a few words (stable: the lead's table is keyed by it)
    file: str  # path relative to the repository root
    pattern: str  # regular expression (re.MULTILINE) locating the code to change
    replacement: str  # re.sub replacement (may use \1 ... groups)
    tests: tuple[str, ...]  # pytest node ids / files that should catch it
    count: int = 1  # how many matches the anchor must have


# Bugs that passed the whole suite before issue 17's tests, then the ones already caught.
MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "cli resume keeps rows another model scored",
        "gifsent_infer/running/rows.py",  # the one resume rule (resume_plan), used by the CLI
        r'(row\.get\("status"\) == "ok") and row\.get\("model_id"\) == model_id',
        r"\1",
        (
            "tests/infer/test_bugs_resume.py::test_cli_resume_with_another_model_rescores_everything",
        ),
    ),
    Mutation(
        "cli resume keeps rows of files whose content changed",
        "gifsent_infer/writing/run.py",  # score_to_file, the library call behind `score`
        r"lambda path, sha: done\.get\(path\) == sha",
        "lambda path, sha: path in done",
        ("tests/infer/test_bugs_resume.py::test_cli_resume_rescores_a_file_whose_content_changed",),
    ),
    Mutation(
        "ray resume keeps rows another model scored",
        "gifsent_infer/running/rows.py",  # the same rule (resume_plan), caught by the Ray test here
        r'(row\.get\("status"\) == "ok") and row\.get\("model_id"\) == model_id',
        r"\1",
        (
            "tests/infer/test_bugs_resume.py::test_ray_resume_with_another_model_and_changed_content",
        ),
    ),
    Mutation(
        "ray resume keeps rows of files whose content changed",
        "gifsent_infer/scaleout/distributed.py",
        r"done\.get\(src\.name\) == digest",
        "src.name in done",
        (
            "tests/infer/test_bugs_resume.py::test_ray_resume_with_another_model_and_changed_content",
        ),
    ),
    Mutation(
        "int8/fp16 ranking gate lowered to 0.5",
        "export/parity.py",
        r"^(MIN_MEAN_SPEARMAN\s*=\s*)0\.98\b",
        r"\g<1>0.5",
        (
            "tests/export/test_export_gates.py::test_ranking_gate_just_past_the_threshold",
            "tests/export/test_export_gates.py::test_fp16_export_gate_refuses_0_97_and_accepts_0_99",
        ),
    ),
    Mutation(
        "int8/fp16 ranking gate lowered to 0.0",
        "export/parity.py",
        r"^(MIN_MEAN_SPEARMAN\s*=\s*)0\.98\b",
        r"\g<1>0.0",
        (
            "tests/export/test_export_gates.py::test_ranking_gate_just_past_the_threshold",
            "tests/export/test_export_gates.py::test_fp16_export_gate_refuses_0_97_and_accepts_0_99",
        ),
    ),
    Mutation(
        "fp32 parity tolerance loosened to 1e-1",
        "export/parity.py",
        r"^(FP32_ATOL\s*=\s*)1e-4\b",
        r"\g<1>1e-1",
        (
            "tests/export/test_export_gates.py::test_fp32_tolerance_just_past_the_threshold",
            "tests/export/test_export_gates.py::test_fp32_export_refuses_a_graph_off_by_2e_4_and_accepts_5e_5",
        ),
    ),
    Mutation(
        "pipeline splits ignore the configured seed",
        "train/stages.py",
        r"sp\.make_splits\(ids, seed=cfg\.seed, ",
        "sp.make_splits(ids, ",
        (
            "tests/train/test_train_stages.py::test_the_scores_stage_makes_the_splits_with_the_configured_seed",
            "tests/train/test_bugs_train.py::test_seed_flows_from_the_command_line_through_splits_into_the_search",
        ),
    ),
    Mutation(
        "default Bradley-Terry prior 1.0 -> 0.1",
        "train/bradley_terry.py",
        r"^(DEFAULT_L2\s*=\s*)1\.0\b",
        r"\g<1>0.1",
        (
            "tests/train/test_bugs_train.py::test_default_prior_is_a_standard_normal_known_answer",
            "tests/train/test_bugs_train.py::test_default_prior_agrees_with_choix_at_alpha_one_half",
        ),
    ),
    Mutation(
        "scores.csv _strength and _se header names swapped",
        "train/bradley_terry.py",
        r'(f"\{e\}_)strength(" for e in EMOTIONS\]\s*\+\s*\[f"\{e\}_)se(")',
        r"\1se\2strength\3",
        ("tests/train/test_bugs_train.py::test_scores_csv_header_is_pinned_by_name",),
    ),
    # --- already caught by the suite before issue 17 ---
    Mutation(
        "Bradley-Terry gradient sign flipped",
        "train/bradley_terry.py",
        r"grad = l2 \* theta - np\.bincount\(w, q, minlength=n\) \+ np\.bincount\(lo, q, minlength=n\)",
        "grad = l2 * theta + np.bincount(w, q, minlength=n) - np.bincount(lo, q, minlength=n)",
        ("tests/train/test_bradley_terry.py",),
    ),
    Mutation(
        "sampling: frame start times shifted by one frame",
        "gifsent_infer/reading/gifio.py",
        r"starts = np\.cumsum\(d\) - d\b",
        "starts = np.cumsum(d)",
        ("tests/infer/test_gifio.py", "tests/infer/test_gifio_reference.py"),
    ),
    Mutation(
        "sampling: segments spaced by D/(S+1) instead of D/S",
        "gifsent_infer/reading/gifio.py",
        r"\* \(total / S\)",
        "* (total / (S + 1))",
        ("tests/infer/test_gifio.py", "tests/infer/test_gifio_reference.py"),
    ),
    Mutation(
        "loop padding clamps to the last frame instead of wrapping",
        "gifsent_infer/reading/gifio.py",
        r"t = np\.mod\(t, total\)",
        "t = np.minimum(t, total - 1e-6)",
        ("tests/infer/test_gifio.py", "tests/infer/test_gifio_reference.py"),
    ),
    Mutation(
        "GIF disposal 2 (restore to background) ignored",
        "gifsent_infer/reading/gifio.py",
        r"if f\.disposal == 2:",
        "if f.disposal == -2:",
        ("tests/infer/test_gifio.py", "tests/infer/test_gifio_reference.py"),
    ),
    Mutation(
        "GIF disposal 3 (restore previous) ignored",
        "gifsent_infer/reading/gifio.py",
        r"if visible and f\.disposal in \(3, 4\):",
        "if visible and f.disposal in (4,):",
        ("tests/infer/test_gifio.py", "tests/infer/test_gifio_reference.py"),
    ),
    Mutation(
        "ResNeXt input mean in BGR order",
        "models/encoders/resnext3d.py",
        r"mean=\(114\.7748, 107\.7354, 99\.4750\)",
        "mean=(99.4750, 107.7354, 114.7748)",
        ("tests/models/test_models_resnext.py", "tests/models/test_models.py"),
    ),
    Mutation(
        "scores file columns: emotions before the info columns",
        "gifsent_infer/running/rows.py",
        r"COLUMNS: tuple\[str, \.\.\.\] = \(\*INFO_COLUMNS, \*EMOTIONS\)",
        "COLUMNS: tuple[str, ...] = (*EMOTIONS, *INFO_COLUMNS)",
        (
            "tests/infer/test_tightened_values.py::test_scores_file_columns_are_pinned_by_name_and_order",
        ),
    ),
    Mutation(
        "cli resume skips inputs that failed before instead of retrying them",
        "gifsent_infer/running/rows.py",
        r'elif row\.get\("status"\) == "ok" and (row\.get\("model_id"\))',
        r"elif \1",
        ("tests/infer/test_infer_resume.py",),
    ),
    Mutation(
        "splits ignore their seed (splits.py)",
        "train/splits.py",
        r"_rank_key\(seed, g\)",
        "_rank_key(0, g)",
        ("tests/train/test_votes.py::test_splits_deterministic_disjoint_and_order_free",),
    ),
)


@dataclasses.dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed | SURVIVED | NOT FOUND | INVALID | killed (timeout)
    seconds: float = 0.0
    detail: str = ""


def tracked_files(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (repo / p).is_file()]


def read_package_dir(pyproject: Path) -> dict[str, str]:
    """[tool.setuptools] package-dir: import name -> folder (tomllib, Python >= 3.11)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the one inline table, read with a regular expression
        line = re.search(r"^package-dir\s*=\s*\{(.*)\}", pyproject.read_text(), re.M)
        return dict(re.findall(r'"([^"]+)"\s*=\s*"([^"]+)"', line.group(1))) if line else {}
    config = tomllib.loads(pyproject.read_text())
    return config.get("tool", {}).get("setuptools", {}).get("package-dir", {})


def make_copy(repo: Path, root: Path) -> tuple[Path, Path]:
    """Copy the checkout's files to root/repo; root/pkgs holds one symlink per import name."""
    copy = root / "repo"
    for rel in tracked_files(repo):
        dst = copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dst)
    pkgs = root / "pkgs"
    pkgs.mkdir()
    package_dir = read_package_dir(repo / "pyproject.toml")
    for name, folder in package_dir.items():
        if "." in name:  # a subpackage: found inside its parent's folder when it lives there
            parent, _, leaf = name.rpartition(".")
            if Path(folder) != Path(package_dir.get(parent, parent)) / leaf:
                raise SystemExit(f"cannot map subpackage {name} -> {folder} with a symlink")
            continue
        (pkgs / name).symlink_to(copy / folder, target_is_directory=True)
    return copy, pkgs


def environment(pkgs: Path) -> dict[str, str]:
    env = dict(os.environ)
    # the tests look for ../shared/gifs next to the repository; the copy lives elsewhere
    shared = Path(env.get("GIFSENT_SHARED_GIFS") or REPO.parent / "shared" / "gifs")
    if shared.is_dir():
        env["GIFSENT_SHARED_GIFS"] = str(shared.resolve())
    env["PYTHONPATH"] = os.pathsep.join([str(pkgs), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports_copy(python: str, copy: Path, pkgs: Path, names: list[str]) -> None:
    code = "import importlib, sys\n" + "".join(
        f"print(importlib.import_module({n!r}).__file__)\n" for n in names
    )
    res = subprocess.run(
        [python, "-c", code], cwd=copy, env=environment(pkgs), capture_output=True, text=True
    )
    files = res.stdout.split()
    bad = [f for f in files if not Path(f).resolve().is_relative_to(copy.resolve())]
    if res.returncode or bad or len(files) != len(names):
        raise SystemExit(
            f"the copy's code is not what gets imported ({bad or res.stderr.strip()}); "
            "mutations would test the original checkout"
        )


def locate(m: Mutation, text: str) -> tuple[str | None, str]:
    """The mutated text, or None with the reason."""
    matches = list(re.finditer(m.pattern, text, flags=re.MULTILINE))
    if len(matches) != m.count:
        return None, (
            f"anchor /{m.pattern}/ matches {len(matches)} time(s) in {m.file}, expected "
            f"{m.count}: the code moved or changed; update the mutation in scripts/mutants.py"
        )
    mutated = re.sub(m.pattern, m.replacement, text, flags=re.MULTILINE)
    if mutated == text:
        return None, "the replacement leaves the code unchanged"
    return mutated, ""


def anchor_problems(m: Mutation, repo: Path = REPO) -> list[str]:
    """What keeps mutation `m` from running as declared in `repo` (empty: nothing)."""
    target = repo / m.file
    if not target.is_file():
        return [f"{m.file} does not exist"]
    mutated, why = locate(m, target.read_text(encoding="utf-8"))
    if mutated is None:
        return [why]
    problems = []
    try:
        compile(mutated, str(target), "exec")
    except SyntaxError as e:
        problems.append(f"the mutated code does not compile: {e}")
    for t in m.tests:
        path, _, name = t.partition("::")
        if not (repo / path).is_file():
            problems.append(f"test file {path} is gone")
        elif name and not re.search(
            rf"^def {re.escape(name)}\(", (repo / path).read_text(encoding="utf-8"), re.M
        ):
            problems.append(f"no test {name} in {path}")
    return problems


def check_anchors(chosen: list[Mutation], repo: Path = REPO) -> list[str]:
    """One "anchor gone: <mutation>: <why>" line per problem of the chosen mutations, and a
    repeated name."""
    names = [m.name for m in MUTATIONS]
    lines = [f"anchor gone: {n}: the name is used twice" for n in set(names) if names.count(n) > 1]
    for m in chosen:
        lines += [f"anchor gone: {m.name}: {why}" for why in anchor_problems(m, repo)]
    return lines


def pytest_cmd(python: str, tests: list[str]) -> list[str]:
    return [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]


def run_tests(python, copy, pkgs, tests, timeout) -> tuple[int | None, float, str]:
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            pytest_cmd(python, tests),
            cwd=copy,
            env=environment(pkgs),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, "timeout"
    tail = (res.stdout + res.stderr).strip().splitlines()
    return res.returncode, time.perf_counter() - t0, tail[-1] if tail else ""


def missing_tests(copy: Path, tests: list[str]) -> list[str]:
    return [t for t in tests if not (copy / t.split("::")[0]).is_file()]


def mutate_and_test(m: Mutation, python, copy, pkgs, timeout) -> Outcome:
    target = copy / m.file
    if not target.is_file():
        return Outcome(m, "NOT FOUND", detail=f"{m.file} does not exist")
    absent = missing_tests(copy, list(m.tests))
    if absent:
        return Outcome(m, "NOT FOUND", detail=f"test file(s) missing: {absent}")
    original = target.read_text(encoding="utf-8")
    mutated, why = locate(m, original)
    if mutated is None:
        return Outcome(m, "NOT FOUND", detail=why)
    try:
        compile(mutated, str(target), "exec")
    except SyntaxError as e:
        return Outcome(m, "INVALID", detail=f"mutated code does not compile: {e}")
    target.write_text(mutated, encoding="utf-8")
    try:
        rc, secs, last = run_tests(python, copy, pkgs, list(m.tests), timeout)
    finally:
        target.write_text(original, encoding="utf-8")
    if rc is None:
        return Outcome(m, "killed (timeout)", secs, f"tests ran past {timeout} s")
    if rc == 0:
        return Outcome(m, "SURVIVED", secs, last)
    if rc == 1:
        return Outcome(m, "killed", secs, last)
    # rc 2..5: interrupted, internal or usage error, or no tests collected
    return Outcome(m, "SURVIVED" if rc == 5 else "killed", secs, f"pytest rc {rc}: {last}")


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| mutation (what it breaks) | file | tests run | result | s |",
        "|---|---|---|---|---:|",
    ]
    for o in outcomes:
        tests = ", ".join(f"`{t.removeprefix('tests/')}`" for t in o.mutation.tests)
        lines.append(
            f"| {o.mutation.name} | `{o.mutation.file}` | {tests} | {o.status} | {o.seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", dest="select", help="only mutations whose name contains this text")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument(
        "--check-anchors",
        action="store_true",
        help="only check that every anchor matches, each mutant compiles and its tests exist",
    )
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutation's tests")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated test run")
    ap.add_argument("--markdown", type=Path, help="also write the result table to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (for debugging)")
    args = ap.parse_args(argv)

    chosen = [m for m in MUTATIONS if not args.select or args.select.lower() in m.name.lower()]
    if not chosen:
        print(f"no mutation name contains {args.select!r}; see --list", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name}\n  {m.file}: /{m.pattern}/ -> {m.replacement!r}")
            print(f"  tests: {' '.join(m.tests)}")
        return 0
    gone = check_anchors(chosen)
    for line in gone:
        print(line, file=sys.stderr)
    if gone or args.check_anchors:
        print(
            f"anchors: {len(chosen) - len({g.split(': ')[1] for g in gone})} of {len(chosen)} "
            "found" + ("; update the mutations in scripts/mutants.py" if gone else ""),
            file=sys.stderr,
        )
        return 1 if gone else 0

    root = Path(tempfile.mkdtemp(prefix="gifsent-mutants-"))
    try:
        copy, pkgs = make_copy(REPO, root)
        check_imports_copy(args.python, copy, pkgs, sorted(p.name for p in pkgs.iterdir()))
        print(f"copy of {REPO} in {copy}; python {args.python}", file=sys.stderr)
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests if not missing_tests(copy, [t])})
            print(f"baseline: {len(tests)} test target(s), unmutated ...", file=sys.stderr)
            rc, secs, last = run_tests(args.python, copy, pkgs, tests, args.timeout * 2)
            if rc != 0:
                print(
                    f"BASELINE FAILED (rc {rc}, {secs:.0f} s): {last}\nthe named tests fail "
                    f"without any mutation; fix them first. Command, in a copy:\n  "
                    + " ".join(pytest_cmd(args.python, tests)),
                    file=sys.stderr,
                )
                return 1
            print(f"baseline passed in {secs:.0f} s", file=sys.stderr)
        outcomes = []
        for i, m in enumerate(chosen, 1):
            print(f"[{i}/{len(chosen)}] {m.name} ...", file=sys.stderr, flush=True)
            o = mutate_and_test(m, args.python, copy, pkgs, args.timeout)
            print(f"    {o.status} ({o.seconds:.0f} s) {o.detail}", file=sys.stderr, flush=True)
            outcomes.append(o)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    text = table(outcomes)
    print(text)
    bad = [o for o in outcomes if not o.status.startswith("killed")]
    for o in bad:
        print(f"{o.status}: {o.mutation.name}: {o.detail}", file=sys.stderr)
    killed = len(outcomes) - len(bad)
    print(f"\n{killed} of {len(outcomes)} mutations killed", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
