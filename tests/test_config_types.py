"""Config values of the wrong type (issue 16, family 4): refused when read, naming file and key.

The stages are run as a user runs them (``main([...])`` with a bad YAML in tmp_path):
exit code 1, one message ``file: dotted.key: expected ...``, no traceback, nothing
written.  Then the checker's table of (type hint, value) -> accepted as / refused with,
and every config shipped in the repository loaded through its reader and round-tripped
through ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pytest

from deepspeaker.augment.config import load_augment_config
from deepspeaker.bin import (
    augment_data_dir,
    compute_fbank_vad,
    describe_system,
    train_embedding,
    train_plda,
    train_ubm,
)
from deepspeaker.bin.compute_fbank_vad import FeatureConfig
from deepspeaker.bin.train_plda import read_backend_config
from deepspeaker.config_types import (
    Count,
    Fraction,
    Parse,
    Positive,
    Range,
    Refused,
    Seed,
    check_value,
)
from deepspeaker.ivector.pipeline import IvectorConfig, read_config
from deepspeaker.nnet.config import train_config_from_dict
from deepspeaker.utils import ConfigError, dataclass_from_dict, load_yaml, save_yaml

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refused(capfd, rc: int) -> str:
    """The one error line of a stage that refused its input (exit 1, no traceback)."""
    err = capfd.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, err
    return errors[0]


# --------------------------------------------------------------------------- the stages


@pytest.mark.parametrize("text, message", [
    ("optimizer: {lr_start: abc}\n", "optimizer.lr_start: expected a number, got 'abc'"),
    ("dev: {enabled: 'false'}\n", ("dev.enabled: expected true or false, got 'false' (quoted, "
     "so a string, not a boolean: write false without quotes)")),
    ("epochs: '10'\n", "epochs: expected an integer, got '10'"),
    ("batch_size: 64.0\n", "batch_size: expected an integer, got 64.0"),
    ("batch_size: 0\n", "batch_size: must be >= 1, got 0"),
    ("optimizer: {momentum: 1.5}\n", "optimizer.momentum: must be within [0, 1), got 1.5"),
    ("loader: {num_workers: -1}\n", "loader.num_workers: must be >= 0, got -1"),
    ("loader: {num_workers: many}\n", ("loader.num_workers: expected auto or an integer, "
     "got 'many'")),
    ("loader: {prefetch: true}\n", "loader.prefetch: expected an integer, got true"),
    ("model: {name: gru, options: {width: wide}}\n",
     "model.options.width: expected a number, got 'wide'"),
    ("model: {name: resnet}\n", "model.name: expected one of gru, rescnn, got 'resnet'"),
    ("stage: arcface\n", "stage: expected one of softmax, triplet, got 'arcface'"),
    ("amp: on\n", "amp: expected one of auto, bf16, off, got true"),
    ("chunk_frames_range: [100, x]\n", "chunk_frames_range[1]: expected an integer, got 'x'"),
    ("seed: -1\n", "seed: must be within [0, 4294967296), got -1"),
    ("init: 5\n", "init: expected a string or null, got 5"),
    ("triplet: 0.1\n", "'triplet' must be a mapping, got 0.1"),
])
def test_train_embedding_refuses_wrong_types(tmp_path, capfd, text, message):
    conf = write(tmp_path / "conf" / "gru_softmax.yaml", text)
    exp = tmp_path / "exp"
    rc = train_embedding.main(["--config", str(conf), str(tmp_path / "train"), "-", str(exp)])
    assert f"{conf}: {message}" in refused(capfd, rc)
    assert not exp.exists()


@pytest.mark.parametrize("text, message", [
    ("fbank: {dither: abc}\n", "fbank.dither: expected a number, got 'abc'"),
    ("fbank: {snip_edges: 'false'}\n", "fbank.snip_edges: expected true or false, got 'false'"),
    ("fbank: {num_mel_bins: 40.0}\n", "fbank.num_mel_bins: expected an integer, got 40.0"),
    ("vad: {vad_frames_context: '2'}\n", "vad.vad_frames_context: expected an integer, got '2'"),
    ("fbank: {seed: .nan}\n", "fbank.seed: expected an integer or null, got NaN"),
    ("fbank: {num_mel_bins: 2}\n", "fbank: num_mel_bins must be an integer >= 3 (Kaldi), got 2"),
    ("vad: 5\n", "'vad' must be a mapping, got 5"),
])
@pytest.mark.parametrize("job", [False, True])
def test_compute_fbank_vad_names_the_file(tmp_path, capfd, text, message, job):
    conf = write(tmp_path / "feats.yaml", text)
    data = tmp_path / "data"
    data.mkdir()
    argv = ["--config", str(conf)] + (["--nj", "1", "--job", "1"] if job else []) + [str(data)]
    assert f"{conf}: {message}" in refused(capfd, compute_fbank_vad.main(argv))
    assert sorted(p.name for p in data.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ("ubm: {num_components: '8'}\n", "ubm.num_components: expected an integer, got '8'"),
    ("ubm: {num_components: 0}\n", "ubm: num_components must be an integer >= 1, got 0"),
    ("stats: {top_k: 2.5}\n", "stats.top_k: expected an integer or null, got 2.5"),
    ("extractor: {min_divergence: 'no'}\n", ("extractor.min_divergence: expected true or false, "
     "got 'no' (quoted, so a string, not a boolean: write false without quotes)")),
    ("frontend: {cepstral_lifter: 2e1x}\n", ("frontend.cepstral_lifter: expected a number, "
     "got '2e1x'")),
    ("backend: {plda: {num_em_iters: ten}}\n", ("backend.plda.num_em_iters: expected an integer, "
     "got 'ten'")),
    ("extractor: {seed: 4294967296}\n", ("extractor.seed: must be within [0, 4294967296), "
     "got 4294967296")),
])
def test_train_ubm_refuses_wrong_types(tmp_path, capfd, text, message):
    conf = write(tmp_path / "ivector.yaml", text)
    exp = tmp_path / "exp"
    rc = train_ubm.main(["--config", str(conf), str(tmp_path / "data"), str(exp)])
    assert f"{conf}: {message}" in refused(capfd, rc)
    assert not (exp / "config.yaml").exists()


def test_saved_ivector_config_is_checked_when_read_back(tmp_path, capfd):
    exp = tmp_path / "exp" / "ivector"
    save_yaml(exp / "config.yaml", IvectorConfig().to_dict())
    text = (exp / "config.yaml").read_text().replace("lda_dim: 200", "lda_dim: '200'")
    write(exp / "config.yaml", text)
    rc = train_plda.main([str(exp), str(tmp_path / "data")])
    assert f"{exp}/config.yaml: backend.lda_dim: expected an integer, got '200'" \
        in refused(capfd, rc)


@pytest.mark.parametrize("text, argv, message", [
    ("lda_dim: 1.5\n", [], "lda_dim: expected an integer, got 1.5"),
    ("plda: {normalize_length: 'yes'}\n", [], ("plda.normalize_length: expected true or false, "
     "got 'yes' (quoted, so a string, not a boolean: write true without quotes)")),
    ("plda: {num_em_iters: -1}\n", [], "plda: num_em_iters must be a non-negative integer"),
    ("lda_dim: 100\n", ["--lda-dim", "0"], "--lda-dim must be >= 1, got 0"),
])
def test_train_plda_backend_config(tmp_path, capfd, text, argv, message):
    conf = write(tmp_path / "backend.yaml", text)
    exp = tmp_path / "exp"
    rc = train_plda.main(["--vectors", str(tmp_path / "embedding.scp"), "--config", str(conf)]
                         + argv + [str(exp), str(tmp_path / "data")])
    line = refused(capfd, rc)
    assert message in line and (argv or f"{conf}: {message}" in line)
    assert not exp.exists()


@pytest.mark.parametrize("text, message", [
    ("reverb: {fraction: high}\n", "reverb.fraction: expected a number, got 'high'"),
    ("noise: {fraction: 1.5}\n", "noise.fraction: must be within [0, 1], got 1.5"),
    ("reverb_prob: 'true'\n", "reverb_prob: expected a number, got 'true'"),
    ("sample_rate: 16000.0\n", "sample_rate: expected an integer, got 16000.0"),
    ("kinds: 3\n", "kinds: expected a list of strings, got 3"),
])
def test_augment_data_dir_refuses_wrong_types(tmp_path, capfd, text, message):
    conf = write(tmp_path / "aug.yaml", text)
    out = tmp_path / "out"
    rc = augment_data_dir.main(["--config", str(conf), "--sources", str(tmp_path / "src"),
                                str(tmp_path / "data"), str(out)])
    assert f"{conf}: {message}" in refused(capfd, rc)
    assert not out.exists()


def test_system_yaml_is_checked_when_read_back(tmp_path, capfd):
    exp = tmp_path / "exp" / "gru_softmax"
    assert describe_system.main([str(exp), "--kind", "deepspeaker", "--model", "gru",
                                 "--strategy", "softmax", "--fraction", "0.5"]) == 0
    capfd.readouterr()
    assert describe_system.main([str(exp), "--show", "fraction"]) == 0
    assert capfd.readouterr().out == "0.5\n"
    write(exp / "system.yaml", (exp / "system.yaml").read_text().replace("0.5", "half"))
    rc = describe_system.main([str(exp), "--show", "fraction"])
    assert "system.yaml: fraction: expected a number, got 'half'" in refused(capfd, rc)


# --------------------------------------------------------------------------- the checker


@dataclass
class Inner:
    a: int = 1


def split_words(value):
    words = str(value).split()
    if not words:
        raise ValueError("expected at least one word")
    return words


@dataclass
class Ranged:
    n: Count = 1
    p: Fraction = 0.5
    rate: Positive = 0.1
    seed: Seed = 0
    workers: Literal["auto"] | Annotated[int, Range(ge=0)] = "auto"
    words: Annotated[list[str], Parse(split_words)] = field(default_factory=list)


@dataclass
class Outer:
    kind: str
    inner: Inner = field(default_factory=Inner)


AMP = Literal["auto", "bf16", "off"]


@pytest.mark.parametrize("hint, value, expected", [
    (int, 3, 3),
    (int, np.int64(3), 3),                       # numpy scalars become Python ones
    (float, 1, 1),                               # an int is a float, kept as written
    (float, 0.5, 0.5),
    (float, np.float32(0.5), 0.5),
    (float, "1e-3", 0.001),                      # PyYAML reads 1e-3 as a string
    (float, "-2.5E+2", -250.0),
    (float, ".5", 0.5),
    (float, "+5", 5.0),
    (float, float("inf"), float("inf")),         # a range check decides about inf
    (bool, True, True),
    (bool, np.bool_(False), False),
    (str, "x", "x"),
    (str, Path("a/b"), "a/b"),
    (int | None, None, None),
    (int | None, 4, 4),
    (list[float], [1, "2e0"], [1, 2.0]),
    (list[int], (1, 2), [1, 2]),
    (list, (1, "a"), [1, "a"]),
    (tuple[int, str], [1, "a"], (1, "a")),
    (tuple[int, ...], [1, 2, 3], (1, 2, 3)),
    (AMP, "off", "off"),
    (AMP, False, "off"),                         # YAML 1.1 reads a bare off as false
    (Literal["auto"] | int, "auto", "auto"),
    (Literal["auto"] | int, 3, 3),
    (Literal["auto", "true", "false"] | bool, "false", "false"),
    (Literal["auto", "true", "false"] | bool, True, "true"),
    (dict, None, {}),                            # an empty YAML section
    (dict[str, int], {"a": 1}, {"a": 1}),
    (Inner, {"a": 2}, Inner(a=2)),
    (Inner, None, Inner()),
    (Any, {1: [None]}, {1: [None]}),
])
def test_check_value_accepts(hint, value, expected):
    got = check_value(hint, value, "k")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("hint, value, message", [
    (int, True, "k: expected an integer, got true"),       # True is an int in Python
    (int, 64.0, "k: expected an integer, got 64.0"),
    (int, "64", "k: expected an integer, got '64'"),
    (int, None, "k: expected an integer, got null"),
    (float, True, "k: expected a number, got true"),
    (float, "abc", "k: expected a number, got 'abc'"),
    (float, "nan", "k: expected a number, got 'nan'"),
    (float, float("nan"), "k: expected a number, got NaN"),
    (float, "1_000", "k: expected a number, got '1_000'"),
    (float, "0x10", "k: expected a number, got '0x10'"),
    (float, "1e-3 ", "k: expected a number, got '1e-3 '"),
    (float, [1.0], "k: expected a number, got [1.0]"),
    (bool, "false", ("k: expected true or false, got 'false' (quoted, so a string, not a "
     "boolean: write false without quotes)")),
    (bool, "Yes", "write true without quotes"),
    (bool, 1, "k: expected true or false, got 1"),
    (bool, "maybe", "k: expected true or false, got 'maybe'"),
    (str, 5, "k: expected a string, got 5"),
    (str, False, "k: expected a string, got false"),
    (int | None, "x", "k: expected an integer or null, got 'x'"),
    (bool | None, "off", "k: expected true or false or null, got 'off' (quoted"),
    (list[int], [1, 2.5], "k[1]: expected an integer, got 2.5"),
    (list[float], "1 2", "k: expected a list of numbers, got '1 2'"),
    (list[str], {"a": 1}, "k: expected a list of strings, got a mapping"),
    (tuple[int, int], [1], "k: expected a list of 2 items (an integer, an integer), got [1]"),
    (AMP, True, "k: expected one of auto, bf16, off, got true"),
    (AMP, "fp16", "k: expected one of auto, bf16, off, got 'fp16'"),
    (Literal["auto"] | int, "x", "k: expected auto or an integer, got 'x'"),
    (Literal["auto", "true", "false"] | bool, "maybe",
     "k: expected one of auto, true, false, got 'maybe'"),
    (Literal[1, 2], True, "k: expected one of 1, 2, got true"),
    (dict, [1], "k: expected a mapping, got [1]"),
    (dict[str, int], {"a": "1"}, "k.a: expected an integer, got '1'"),
    (Inner, 3, "'k' must be a mapping, got 3"),
    (Inner, {"b": 1}, "k: unknown key(s) b; known keys are a"),
    (Inner, {"a": "1"}, "k.a: expected an integer, got '1'"),
])
def test_check_value_refuses(hint, value, message):
    with pytest.raises(Refused) as err:
        check_value(hint, value, "k")
    assert message in str(err.value)


@pytest.mark.parametrize("values, message", [
    ({"n": 0}, "c.yaml: n: must be >= 1, got 0"),
    ({"p": 1.5}, "c.yaml: p: must be within [0, 1], got 1.5"),
    ({"p": "-1e-1"}, "c.yaml: p: must be within [0, 1], got -0.1"),
    ({"rate": 0}, "c.yaml: rate: must be > 0, got 0"),
    ({"seed": -1}, "c.yaml: seed: must be within [0, 4294967296), got -1"),
    ({"workers": -1}, "c.yaml: workers: must be >= 0, got -1"),  # not "expected auto or ..."
    ({"workers": "all"}, "c.yaml: workers: expected auto or an integer, got 'all'"),
    ({"words": " "}, "c.yaml: words: expected at least one word"),
])
def test_ranges_and_parse_functions_are_checked_when_read(values, message):
    with pytest.raises(ConfigError) as err:
        dataclass_from_dict(Ranged, values, "c.yaml")
    assert str(err.value) == message


def test_ranged_values_that_fit():
    cfg = dataclass_from_dict(Ranged, {"p": "1e-1", "n": 3, "workers": 0, "words": "a b"})
    assert cfg == Ranged(n=3, p=0.1, workers=0, words=["a", "b"])


def test_errors_name_the_file_the_values_came_from(tmp_path):
    """load_yaml's mapping remembers its file, so a reader given only the dict names it."""
    conf = write(tmp_path / "c.yaml", "inner: {a: x}\n")
    with pytest.raises(ConfigError) as err:
        dataclass_from_dict(Outer, {**load_yaml(conf), "kind": "k"})  # a copy forgets it
    assert str(err.value) == "config: inner.a: expected an integer, got 'x'"
    with pytest.raises(ConfigError) as err:
        dataclass_from_dict(Outer, load_yaml(conf))
    assert str(err.value) == f"{conf}: missing key(s) kind"
    with pytest.raises(ConfigError) as err:
        FeatureConfig.from_dict(load_yaml(write(conf, "vad: {vad_energy_threshold: x}\n")))
    assert str(err.value) == f"{conf}: vad.vad_energy_threshold: expected a number, got 'x'"
    # A ConfigDict inside another mapping is saved as the plain mapping it is.
    save_yaml(tmp_path / "both.yaml", {"c": load_yaml(conf)})
    assert load_yaml(tmp_path / "both.yaml") == {"c": {"vad": {"vad_energy_threshold": "x"}}}


@pytest.mark.parametrize("text, message", [
    ("[1, 2]\n", "expected a mapping at the top level, got list"),
    ("a: [1\n", "not valid YAML"),
    ("a: !!python/object/apply:os.system [true]\n", "not valid YAML"),
])
def test_load_yaml_refuses_what_is_no_config(tmp_path, text, message):
    conf = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_yaml(conf)
    assert str(err.value).startswith(f"{conf}: {message}")
    with pytest.raises(ConfigError) as err:
        load_yaml(tmp_path)
    assert str(err.value) == f"{tmp_path}: cannot read the config file: Is a directory"


# --------------------------------------------------------------------------- shipped confs


def shipped_confs() -> list[Path]:
    found = sorted({*ROOT.glob("conf/**/*.yaml"), *ROOT.glob("egs/*/conf/*.yaml"), *ROOT.glob("egs/*/conf/*/*.yaml"),
                    *ROOT.glob("tests/conf_*.yaml"), *ROOT.glob("tests/conf_*/**/*.yaml")})
    assert len(found) >= 45, found
    return found


def read_shipped(path: Path):
    """``path`` through the reader its stage uses, and how that stage saves it."""
    if path.name.startswith("augment"):
        cfg = load_augment_config(path)
    elif path.name == "embedding_backend.yaml":
        cfg = read_backend_config(path, None)
        return cfg, dataclasses.asdict(cfg)
    elif path.name == "fbank_vad.yaml":
        cfg = FeatureConfig.from_dict(load_yaml(path))
    elif "ivector" in path.name:
        cfg = read_config(path)
    else:
        cfg = train_config_from_dict(load_yaml(path))
    return cfg, cfg.to_dict()


@pytest.mark.parametrize("path", shipped_confs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_conf_loads_and_round_trips(tmp_path, path):
    cfg, saved = read_shipped(path)
    save_yaml(tmp_path / "config.yaml", saved)
    again = load_yaml(tmp_path / "config.yaml")
    assert again == saved
    assert dataclass_from_dict(type(cfg), again) == cfg


def test_converted_values_round_trip(tmp_path):
    """A string-number and a YAML-1.1 `off` are saved as what they were read as."""
    conf = write(tmp_path / "c.yaml", "optimizer: {lr_start: 1e-3, lr_end: 5E-4}\namp: off\n"
                                      "channels_last: 'false'\nmodel: {name: gru, options:}\n")
    cfg = train_config_from_dict(load_yaml(conf))
    assert (cfg.optimizer.lr_start, cfg.optimizer.lr_end, cfg.amp, cfg.channels_last,
            cfg.model.options) == (0.001, 0.0005, "off", False, {})
    save_yaml(tmp_path / "config.yaml", cfg.to_dict())
    assert train_config_from_dict(load_yaml(tmp_path / "config.yaml")) == cfg


def test_train_ubm_refuses_a_config_that_is_not_utf8(tmp_path, capfd):
    conf = tmp_path / "ivector.yaml"
    conf.write_bytes(b"ubm: {num_components: 4}\n# caf\xe9\n")
    exp = tmp_path / "exp"
    rc = train_ubm.main(["--config", str(conf), str(tmp_path / "data"), str(exp)])
    assert f"{conf}: not a text file (invalid continuation byte at byte 30)" in refused(capfd, rc)
    assert not (exp / "config.yaml").exists()
