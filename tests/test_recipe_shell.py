"""The shell side of every recipe: options from utils/recipe.sh, the help made from them,
the logged command line, the configs each recipe points at, and shellcheck.

Every recipe runs as a user runs it (bash egs/<recipe>/run.sh); ``--stage 1
--stop-stage 0`` parses the options and sources the shared stages without running one,
so these tests need no corpus and start no Python stage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepspeaker.utils import load_yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.parent.name for p in (ROOT / "egs").glob("*/run.sh"))
NO_STAGE = ("--stage", "1", "--stop-stage", "0")
OPTION = re.compile(r"^  --([a-z0-9-]+) (.*)$")


def run_recipe(recipe: str, *args) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs" / recipe / "run.sh"), *map(str, args)]
    return subprocess.run(cmd, env=dict(os.environ, LC_ALL="C"), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def help_options(recipe: str) -> dict[str, tuple[str, str]]:
    """``--help`` as ``{name: (default as shown, comment)}``, in the order printed."""
    r = run_recipe(recipe, "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = OPTION.match(line)
        if m and m.group(1) not in ("config", "help"):
            out[m.group(1)] = (m.group(2), lines[i + 1].strip())
    return out


def unquote(shown: str) -> str:
    return shown[1:-1] if shown.startswith('"') else shown


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_every_option_and_the_parser_takes_them(recipe):
    options = help_options(recipe)
    shared = {"stage", "stop-stage", "nj", "seed", "data", "exp", "feat-conf", "ivector-conf",
              "nnet-conf-dir", "nnet-models", "nnet-strategies", "fusion-strategy",
              "trials-opts", "train-fractions", "transfer-from", "max-failed-fraction",
              "report-title"}
    assert shared <= set(options), shared - set(options)
    for name, (_, comment) in options.items():
        assert comment and not comment.startswith("--"), f"--{name} has no comment"
    # Every option shown is accepted, with the default shown (stages that run: none).
    args = [a for name, (shown, _) in options.items()
            if name not in ("stage", "stop-stage") for a in (f"--{name}", unquote(shown))]
    r = run_recipe(recipe, *args, *NO_STAGE)
    assert r.returncode == 0, r.stderr
    assert "done (stages 1..0)" in r.stderr


@pytest.mark.parametrize("name", ["--train-set", "--paper-conf", "--help-message",
                                  "--option-names", "--PATH"])
def test_variables_that_are_not_options_are_refused(name):
    r = run_recipe("mini", name, "x", *NO_STAGE)
    assert r.returncode == 1
    assert f"unknown option {name}" in r.stderr


def test_recipe_defaults_and_own_options_in_the_help():
    vox = help_options("voxceleb")
    assert vox["nj"][0] == "8"  # the recipe's default for a shared option
    assert vox["nnet-conf-dir"][0] == "../../conf/paper"
    assert vox["vox1-dir"] == ('""', "VoxCeleb1: wav/<spk>/<youtube_id>/<nnnnn>.wav, "
                                     "or dev/wav + test/wav")
    assert vox["trial-lists"][1].endswith("list_test_hard2.txt (default: --vox1-dir)")  # 2 lines
    mini = help_options("mini")
    assert mini["nj"] == ("2", "parallel jobs; the default machine has 2 cores")
    assert mini["corpus-opts"][1] == "extra options for local/make_corpus.py (sizes, durations)"
    assert "vox1-dir" not in mini
    r = run_recipe("mini", "--help")
    assert r.stderr.startswith("egs/mini: the embedded synthetic corpus")  # the header comment
    assert "shellcheck" not in r.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_points_at_configs_that_exist(recipe):
    """The default confs of each recipe, resolved from its folder, are there and parse."""
    options = help_options(recipe)
    here = ROOT / "egs" / recipe
    if recipe == "mini_scale":  # one conf dir per size: SIZE_CONF_DIR/spk<N>/
        assert isinstance(load_yaml(here / options["feat-conf"][0]), dict)
        for n in unquote(options["sizes"][0]).split():
            d = here / options["size-conf-dir"][0] / f"spk{n}"
            assert isinstance(load_yaml(d / "ivector.yaml"), dict), n
            for model in unquote(options["nnet-models"][0]).split():
                for strategy in ("softmax", "triplet"):
                    assert (d / f"{model}_{strategy}.yaml").is_file(), (n, model, strategy)
        return
    for name in ("feat-conf", "ivector-conf"):
        assert isinstance(load_yaml(here / options[name][0]), dict), name
    conf_dir = here / options["nnet-conf-dir"][0]
    wanted = ["softmax", "triplet", "triplet_only"]
    if unquote(options["transfer-from"][0]) or conf_dir.resolve() == ROOT / "conf" / "paper":
        wanted.append("transfer")
    for model in unquote(options["nnet-models"][0]).split():
        for strategy in wanted:
            assert (conf_dir / f"{model}_{strategy}.yaml").is_file(), (model, strategy)


def test_command_line_is_logged_as_typed(tmp_path):
    r = run_recipe("mini", "--corpus-opts", "--num-eval-spk 20", "--data", tmp_path / "d",
                   *NO_STAGE)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\) \S*egs/mini/run\.sh --corpus-opts --num-eval-spk\\ 20 --data "
                     + re.escape(str(tmp_path / "d")) + " --stage 1 --stop-stage 0\n", r.stderr), \
        r.stderr


def test_config_file_and_bad_arguments(tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("nj=5\n")
    r = run_recipe("mini", "--config", conf, *NO_STAGE)
    assert r.returncode == 0 and "nj=5," in r.stderr, r.stderr
    r = run_recipe("mini", *NO_STAGE, "stray")
    assert r.returncode == 1 and "unexpected argument 'stray'" in r.stderr
    r = run_recipe("mini", "--nnet-strategies", "softmax tripplet", *NO_STAGE)
    assert r.returncode == 1 and "unknown strategy 'tripplet'" in r.stderr


def test_shellcheck():
    """Every shell script of utils/ and every recipe, with shellcheck found on PATH."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("shellcheck is not on PATH (bash utils/install.sh --extras test)")
        pytest.skip("shellcheck is not on PATH (bash utils/install.sh --extras test installs it)")
    scripts = sorted(str(p.relative_to(ROOT)) for p in
                     [*(ROOT / "utils").glob("*.sh"), *ROOT.glob("run.sh"),
                      *(ROOT / "egs").glob("*/run.sh")])
    assert "utils/stages.sh" in scripts and "egs/mini/run.sh" in scripts
    r = subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert r.returncode == 0, r.stdout + r.stderr
