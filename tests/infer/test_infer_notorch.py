"""The runtime needs no torch: the library and the whole CLI run in a process where importing torch raises."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from infer_support import build_model, write_gifs

# Runs in a fresh interpreter: any attempt to import torch (or a torch submodule) raises,
# and is recorded, so a guarded `try: import torch` cannot hide either.
PROGRAM = textwrap.dedent(
    """
    import sys

    attempts = []

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                attempts.append(name)
                raise ImportError("torch is not available in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.modules.pop("torch", None)

    model, gifs, out = sys.argv[1:4]

    # the library, without typer or rich
    from gifsent_infer.running.scorer import Scorer
    from gifsent_infer.views.search import search

    scorer = Scorer(model, device="cpu")
    results = list(scorer.score_many([gifs + "/g00000.gif", gifs + "/g00001.gif"]))
    assert all(r.ok for r in results), results
    assert "typer" not in sys.modules and "rich" not in sys.modules, "library pulled in the CLI"

    # the CLI: score, info, search, in this same process
    from gifsent_infer.cli import main

    for argv in (
        [gifs, "--out", out, "--model", model, "--device", "cpu"],
        ["info", model],
        ["search", out, "--emotion", "happiness", "--top", "2"],
    ):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, None), (argv, e.code)
    assert len(search(out, emotion="fear", top=None)) == 3
    assert "torch" not in sys.modules
    print("attempts:", attempts)
    print("NO-TORCH-OK")
    """
)


def test_library_and_cli_run_where_importing_torch_raises(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 3)
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(model), str(gifs), str(tmp_path / "scores.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NO-TORCH-OK" in proc.stdout
    assert "attempts: []" in proc.stdout  # nothing even tried to import torch
    assert (tmp_path / "scores.csv").exists()


def test_importing_the_library_pulls_in_no_cli_or_model_packages():
    code = (
        "import sys, gifsent_infer, gifsent_infer.running.scorer, gifsent_infer.running.session, gifsent_infer.views.search, "
        "gifsent_infer.writing.outputs, gifsent_infer.reading.inputs, gifsent_infer.running.batch;"
        "bad = [m for m in ('torch', 'typer', 'rich', 'onnx', 'onnxruntime') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # onnxruntime too: it is imported when a model is loaded
