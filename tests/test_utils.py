"""Shared helpers: config dataclasses reject unknown keys at every level; atomic writes."""

from dataclasses import dataclass, field

import pytest

from deepspeaker.utils import ConfigError, atomic_write, dataclass_from_dict


@dataclass
class Inner:
    a: int = 1
    b: float = 2.0


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"


def test_nested_sections_are_built_and_checked():
    cfg = dataclass_from_dict(Outer, {"inner": {"a": 5}, "name": "y"}, "c.yaml")
    assert cfg == Outer(Inner(5, 2.0), "y")
    assert dataclass_from_dict(Outer, None) == Outer()
    with pytest.raises(ConfigError, match=r"c\.yaml: inner: unknown key\(s\) c; known keys are a, b"):
        dataclass_from_dict(Outer, {"inner": {"c": 1}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key\(s\) innr"):
        dataclass_from_dict(Outer, {"innr": {}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"'inner' must be a mapping, got 3"):
        dataclass_from_dict(Outer, {"inner": 3}, "c.yaml")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_write(target) as f:
        f.write("new\n")
    assert target.read_text() == "new\n"


def test_user_error_is_one_message_with_file_and_line(capsys):
    """run_main turns a DeepSpeakerError into `file:line: message` and exit code 1."""
    from deepspeaker.bin._cli import run_main
    from deepspeaker.utils import DeepSpeakerError, SizeMismatchError

    def fail():
        raise SizeMismatchError("PLDA is for 5-dim vectors, the data are 3-dim",
                                path="exp/models/plda.npz")

    assert run_main(fail, argv=[]) == 1
    err = capsys.readouterr().err
    assert "ERROR" in err and "exp/models/plda.npz: PLDA is for 5-dim vectors" in err
    assert "Traceback" not in err
    e = DeepSpeakerError("bad key", path="conf.yaml", line=3)
    assert (str(e), e.path, e.line) == ("conf.yaml:3: bad key", "conf.yaml", 3)
    assert str(DeepSpeakerError("plain")) == "plain"
    assert isinstance(SizeMismatchError("x"), ValueError)  # callers that catch ValueError

    def bug():
        raise RuntimeError("a bug keeps its traceback")

    with pytest.raises(RuntimeError):
        run_main(bug, argv=[])
