"""Damaged model and feature files (issue 16, family 3), through the commands a user runs.

* A feats.scp / vad.scp entry that points into a truncated or overwritten ark: in
  extraction (embeddings, i-vectors) the utterance is listed in ``failed`` /
  ``failed_utts`` naming ``feats.scp:line`` (or ``vad.scp:line``) and the ark, and the
  others are written; in training it stops the run before any step, naming the
  utterance and the line, and nothing is trained on the rest.
* A checkpoint or i-vector model file that is cut short or damaged: one message naming
  the file, exit code 1, no traceback; one holding objects is refused as "not a
  deepspeaker" file that "will not be loaded".
"""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from builders import base_config, make_exp, write_config, write_data_dir

from deepspeaker.bin import extract_embeddings, extract_ivectors, train_embedding
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.ivector.extractor import IvectorExtractor
from deepspeaker.ivector.model_file import ModelFileError
from deepspeaker.ivector.pipeline import IvectorConfig
from deepspeaker.ivector.plda import TwoCovPLDA
from deepspeaker.ivector.ubm import DiagGmm
from deepspeaker.nnet.checkpoint import save_checkpoint
from deepspeaker.utils import save_yaml

UTTS = ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"]
NOT_SHOWN = ("Traceback", "AssertionError", "PytorchStreamReader", "weights_only", "BadZipFile")


def offsets(scp: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for line in scp.read_text().splitlines():
        utt, entry = line.split(" ", 1)
        path, _, off = entry.rpartition(":")
        out[utt] = (path, int(off))
    return out


def damage(ark: Path, scp: Path, garbage: str | None, cut_inside: str | None) -> None:
    """Overwrite the header of ``garbage``'s matrix; cut the ark 30 bytes into ``cut_inside``'s."""
    where = offsets(scp)
    data = bytearray(ark.read_bytes())
    if garbage:
        off = where[garbage][1]
        data[off:off + 8] = b"garbage!"
    if cut_inside:
        data = data[:where[cut_inside][1] + 30]
    ark.write_bytes(bytes(data))


@pytest.fixture()
def feats(tmp_path) -> Path:
    """6 utterances of 64-d features; a-2's header overwritten, the ark cut inside b-2."""
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    write_ark_scp(d / "feats.ark", d / "feats.scp",
                  {u: rng.standard_normal((60 + 7 * i, 64)).astype(np.float32)
                   for i, u in enumerate(UTTS)})
    write_ark_scp(d / "vad.ark", d / "vad.scp",
                  {u: (rng.random(60 + 7 * i) > 0.2).astype(np.float32) for i, u in enumerate(UTTS)})
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in UTTS))
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in UTTS))
    (d / "spk2utt").write_text("a a-1 a-2 a-3\nb b-1 b-2 b-3\n")
    damage(d / "feats.ark", d / "feats.scp", garbage="a-2", cut_inside="b-2")
    return d


def expected_failures(d: Path) -> dict[str, tuple[str, str]]:
    """utt -> (scp:line, the start of its reason) for the damage :func:`feats` made."""
    where = offsets(d / "feats.scp")
    size = (d / "feats.ark").stat().st_size
    b2, b3 = where["b-2"][1], where["b-3"][1]
    need = 2 + 3 + 10 + 4 * 64 * (60 + 7 * 4)
    a2 = (f"no Kaldi object at offset {where['a-2'][1]} (archive overwritten or damaged?) "
          f"(ark: {where['a-2'][0]}:{where['a-2'][1]})")
    b2_reason = (f"truncated: the object at offset {b2} needs {need} bytes, the archive holds "
                 f"{size - b2} from there (ark: ")
    b3_reason = f"offset {b3} is past the end of the archive ({size} bytes): truncated? (ark: "
    return {"a-2": (f"{d}/feats.scp:2", a2), "b-2": (f"{d}/feats.scp:5", b2_reason),
            "b-3": (f"{d}/feats.scp:6", b3_reason)}


def read_failed(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def assert_clean(err: str, root: Path) -> None:
    for words in NOT_SHOWN:
        assert words not in err, (words, err[-3000:])
    assert [p for p in root.rglob("*") if ".tmp" in p.name] == []


# --------------------------------------------------------------------------- feature files


def test_extract_embeddings_lists_damaged_entries_and_writes_the_rest(tmp_path, feats, capfd):
    exp = make_exp(tmp_path / "exp")
    assert extract_embeddings.main([str(exp), str(feats), "--device", "cpu"]) == 0
    err = capfd.readouterr().err
    assert sorted(kaldiio.load_scp(str(exp / "data" / "embedding.scp"))) == ["a-1", "a-3", "b-1"]
    failed = read_failed(exp / "data" / "failed")
    want = expected_failures(feats)
    assert sorted(failed) == sorted(want)
    for utt, (where, reason) in want.items():
        assert failed[utt].startswith(f"{where}: {reason}"), (utt, failed[utt])
        assert f"{where}: {utt}: {reason}" in err        # and the log says it
    assert_clean(err, tmp_path)


def ivector_exp(exp: Path, seed: int = 0) -> Path:
    """config.yaml, a random 4-component UBM and a rank-3 extractor for 60-d frames."""
    rng = np.random.default_rng(seed)
    cfg = IvectorConfig.from_dict({"ubm": {"num_components": 4}, "stats": {"top_k": 2},
                                   "extractor": {"rank": 3}})
    dim = cfg.frontend.num_ceps * (cfg.frontend.delta_order + 1)
    (exp / "models").mkdir(parents=True)
    save_yaml(exp / "config.yaml", cfg.to_dict())
    ubm = DiagGmm(rng.dirichlet(np.full(4, 3.0)), rng.normal(0, 1, (4, dim)),
                  rng.uniform(0.5, 2.0, (4, dim)))
    ubm.save(exp / "models" / "ubm.npz")
    IvectorExtractor(rng.normal(0, 0.1, (4, dim, 3)), ubm.variances, ubm.means,
                     ubm.weights).save(exp / "models" / "extractor.npz")
    return exp


def test_extract_ivectors_lists_damaged_entries_and_writes_the_rest(tmp_path, feats, capfd):
    # and a VAD cut short: its utterance names vad.scp and its line
    vad = offsets(feats / "vad.scp")
    with open(feats / "vad.ark", "r+b") as f:
        f.truncate(vad["b-1"][1] + 12)
    exp = ivector_exp(tmp_path / "exp")
    assert extract_ivectors.main([str(exp), str(feats)]) == 0
    err = capfd.readouterr().err
    out = exp / "data"
    assert sorted(kaldiio.load_scp(str(out / "ivector.scp"))) == ["a-1", "a-3"]
    failed = read_failed(out / "failed_utts")
    want = expected_failures(feats)
    assert sorted(failed) == ["a-2", "b-1", "b-2", "b-3"]
    for utt, (where, reason) in want.items():
        assert failed[utt].startswith(f"{where}: {reason}"), (utt, failed[utt])
        assert f"{where}: {utt}: {reason}" in err
    assert failed["b-1"].startswith(f"{feats}/vad.scp:4: truncated: the object at offset "
                                    f"{vad['b-1'][1]} needs"), failed["b-1"]
    assert_clean(err, tmp_path)


def test_training_stops_on_a_damaged_feature_file_before_any_step(tmp_path, capfd):
    data = write_data_dir(tmp_path / "train", "tr", 12, 4, 0)
    utts = list(offsets(data / "feats.scp"))
    victim = utts[29]
    damage(data / "feats.ark", data / "feats.scp", garbage=None, cut_inside=victim)
    conf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    exp = tmp_path / "exp"
    assert train_embedding.main(["--config", str(conf), str(data), "-", str(exp)]) == 1
    err = capfd.readouterr().err
    assert (f"{data}/feats.scp:30: {victim}: truncated: the object at offset "
            f"{offsets(data / 'feats.scp')[victim][1]} needs") in err, err[-3000:]
    assert f"; {len(utts) - 30} more damaged entries (ark: {(data / 'feats.ark').resolve()}:" in err
    assert not (exp / "last.pt").exists()
    assert_clean(err, tmp_path)


# --------------------------------------------------------------------------- model files


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("model", ["ubm.npz", "extractor.npz"])
def test_truncated_ivector_models_are_named(tmp_path, feats, capfd, model):
    exp = ivector_exp(tmp_path / "exp")
    path = exp / "models" / model
    size = path.stat().st_size // 2
    cut(path)
    assert extract_ivectors.main([str(exp), str(feats)]) == 1
    err = capfd.readouterr().err
    assert (f"{path}: not a readable model file (truncated or damaged: a zip archive of {size} "
            f"bytes that cannot be read") in err, err[-2000:]
    assert_clean(err, tmp_path)
    # a file of object arrays (pickles) is refused without being unpickled
    np.savez(path, kind=np.array([{"a": 1}], dtype=object))
    assert extract_ivectors.main([str(exp), str(feats)]) == 1
    err = capfd.readouterr().err
    assert (f"{path}: not a deepspeaker model file (it holds object arrays, which could run "
            f"code); it will not be loaded") in err, err[-2000:]
    assert_clean(err, tmp_path)


def test_truncated_plda_is_named(tmp_path):
    path = tmp_path / "plda.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ModelFileError) as e:
        TwoCovPLDA.load(path)
    assert str(e.value).startswith(f"{path}: not a readable model file (truncated or damaged: "
                                   f"a zip archive of 104 bytes that cannot be read")
    path.write_bytes(b"random bytes, no zip")
    with pytest.raises(ModelFileError) as e:
        TwoCovPLDA.load(path)
    assert str(e.value) == f"{path}: not a deepspeaker model file (.npz): not a zip archive (20 bytes)"


def test_checkpoint_with_a_damaged_record_or_foreign_weights(tmp_path, feats, capfd):
    exp = make_exp(tmp_path / "exp")
    good = (exp / "best.pt").read_bytes()
    flipped = bytearray(good)
    mid = len(good) // 2
    flipped[mid:mid + 64] = bytes(64)   # damage inside a tensor record: its CRC fails
    (exp / "flipped.pt").write_bytes(bytes(flipped))
    assert extract_embeddings.main([str(exp), str(feats), "--device", "cpu",
                                    "--checkpoint", "flipped.pt"]) == 1
    err = capfd.readouterr().err
    assert f"{exp / 'flipped.pt'}: not a readable checkpoint (truncated or damaged: " in err, err
    assert_clean(err, tmp_path)
    # weights that do not fit the network the checkpoint records
    ckpt = torch.load(exp / "best.pt", weights_only=True)
    del ckpt["model"][next(iter(ckpt["model"]))]
    save_checkpoint(exp / "partial.pt", ckpt)
    assert extract_embeddings.main([str(exp), str(feats), "--device", "cpu",
                                    "--checkpoint", "partial.pt"]) == 1
    err = capfd.readouterr().err
    assert f"{exp / 'partial.pt'}: the weights do not fit the gru network the checkpoint " \
           f"records (Error(s) in loading state_dict" in err, err[-2000:]
    assert_clean(err, tmp_path)


@pytest.mark.parametrize("stage", ["train_ubm", "train_ivector_extractor"])
def test_ivector_training_stops_on_an_entry_past_the_end_of_the_ark(tmp_path, feats, capfd,
                                                                   stage):
    """feats.scp lines 5 and 6 point past the end of an ark cut where b-2 starts."""
    from deepspeaker.bin import train_ivector_extractor, train_ubm

    ark = feats / "feats.ark"
    write_ark_scp(ark, feats / "feats.scp", {u: np.ones((70, 64), np.float32) for u in UTTS})
    where = offsets(feats / "feats.scp")
    with open(ark, "r+b") as f:
        f.truncate(where["b-2"][1])
    exp = ivector_exp(tmp_path / "exp")
    before = (exp / "models" / "ubm.npz").read_bytes()
    if stage == "train_ubm":
        (exp / "models" / "ubm.npz").unlink()
        rc = train_ubm.main([str(feats), str(exp)])
    else:
        (exp / "models" / "extractor.npz").unlink()
        rc = train_ivector_extractor.main([str(feats), str(exp)])
    assert rc == 1
    err = capfd.readouterr().err
    size = ark.stat().st_size
    assert (f"{feats}/feats.scp:5: b-2: offset {size} is past the end of the archive "
            f"({size} bytes): truncated?; 1 more damaged entries (ark: ") in err, err[-3000:]
    assert not (exp / "models" / ("ubm.npz" if stage == "train_ubm" else "extractor.npz")).exists()
    if stage != "train_ubm":
        assert (exp / "models" / "ubm.npz").read_bytes() == before
    assert_clean(err, tmp_path)


def test_resume_from_a_last_pt_whose_weights_are_of_another_width(tmp_path, capfd):
    """The recorded architecture matches, the tensors do not: one message naming last.pt."""
    from deepspeaker.nnet.checkpoint import load_checkpoint

    data = write_data_dir(tmp_path / "train", "tr", 12, 4, 0)
    conf = write_config(tmp_path / "s.yaml", base_config(epochs=1))
    exp = tmp_path / "exp"
    assert train_embedding.main(["--config", str(conf), "--max-steps", "1", str(data), "-",
                                 str(exp)]) == 0
    ckpt = load_checkpoint(exp / "last.pt")
    key = next(iter(ckpt["model"]))
    w = ckpt["model"][key]
    ckpt["model"][key] = torch.cat([w, torch.zeros_like(w)])   # twice as wide
    save_checkpoint(exp / "last.pt", ckpt)
    before = (exp / "last.pt").read_bytes()
    capfd.readouterr()
    assert train_embedding.main(["--config", str(conf), str(data), "-", str(exp)]) == 1
    err = capfd.readouterr().err
    name = ckpt["model_config"]["name"]
    assert (f"{exp / 'last.pt'}: the weights do not fit the {name} network the checkpoint "
            f"records (Error(s) in loading state_dict") in err, err[-2000:]
    assert (exp / "last.pt").read_bytes() == before
    assert_clean(err, tmp_path)
