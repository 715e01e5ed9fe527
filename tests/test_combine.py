"""combine_data_dir: Kaldi's utils/combine_data.sh semantics, through the command."""

from __future__ import annotations

from augment_trees import make_data, read_map, write_map

from deepspeaker.bin import combine_data_dir as stage
from deepspeaker.data import DataDir, validate_data_dir


def test_union_sorted_spk2utt_rebuilt_and_partial_files_dropped(tmp_path, capfd):
    a = make_data(tmp_path, "a", num_spk=2)
    b = make_data(tmp_path / "other", "b", num_spk=3)  # same ids s0.., renamed below
    ids = {u: f"z{u}" for u in read_map(b / "utt2spk")}
    for name in ("wav.scp", "utt2dur"):
        write_map(b / name, {ids[u]: v for u, v in read_map(b / name).items()})
    write_map(b / "utt2spk", {ids[u]: f"z{s}" for u, s in read_map(b / "utt2spk").items()})
    write_map(b / "spk2gender", {f"z{s}": g for s, g in read_map(b / "spk2gender").items()})
    (b / "spk2utt").unlink()
    write_map(a / "text", {u: "hello" for u in read_map(a / "utt2spk")})
    write_map(b / "utt2uniq", {u: f"orig-{u}" for u in read_map(b / "utt2spk")})
    assert stage.main([str(tmp_path / "all"), str(b), str(a)]) == 0
    err = capfd.readouterr().err
    d = DataDir.load(tmp_path / "all")
    assert len(d.utts) == 4 + 6 and d.utts == sorted(d.utts)
    assert d.spk2utt["zs2"] == ["zs2-u0", "zs2-u1"] and d.spk2utt["s1"] == ["s1-u0", "s1-u1"]
    assert d.spk2gender == {"s0": "m", "s1": "f", "zs0": "m", "zs1": "f", "zs2": "m"}
    assert d.utt2dur["zs1-u0"] == 1.0
    # utt2uniq as Kaldi combines it: a source without one maps its utterances to themselves.
    assert d.utt2uniq["zs1-u0"] == "orig-zs1-u0" and d.utt2uniq["s1-u0"] == "s1-u0"
    assert d.text is None and "text is not in every source" in err  # Kaldi warns, drops
    assert not [p for p in validate_data_dir(tmp_path / "all") if p.severity == "error"]
    lines = (tmp_path / "all" / "utt2spk").read_text().splitlines()
    assert lines == sorted(lines, key=lambda s: s.encode())


def test_duplicate_utterance_names_both_sources(tmp_path, capfd):
    a = make_data(tmp_path, "a", num_spk=1)
    b = make_data(tmp_path / "x", "b", num_spk=1)
    assert stage.main([str(tmp_path / "all"), str(a), str(b)]) == 1
    err = capfd.readouterr().err
    assert f"utterance s0-u0 is in both {a / 'utt2spk'} and {b / 'utt2spk'}" in err
    assert "Traceback" not in err and not (tmp_path / "all" / "utt2spk").exists()


def test_conflicting_speaker_gender_is_an_error(tmp_path, capfd):
    a = make_data(tmp_path, "a", num_spk=1, num_utt=1)
    b = make_data(tmp_path / "x", "b", num_spk=1, num_utt=1)
    write_map(b / "utt2spk", {"s0-u9": "s0"})
    write_map(b / "wav.scp", {"s0-u9": read_map(b / "wav.scp")["s0-u0"]})
    write_map(b / "utt2dur", {"s0-u9": "1"})
    write_map(b / "spk2utt", {"s0": "s0-u9"})
    write_map(b / "spk2gender", {"s0": "f"})
    assert stage.main([str(tmp_path / "all"), str(a), str(b)]) == 1
    assert f"s0 is 'm' in {a / 'spk2gender'} but 'f' in {b / 'spk2gender'}" in \
        capfd.readouterr().err


def test_segmented_and_whole_recordings_combine(tmp_path):
    a = make_data(tmp_path, "a", num_spk=1, num_utt=1)
    b = make_data(tmp_path / "x", "b", num_spk=1, num_utt=1)
    rec = read_map(b / "wav.scp")["s0-u0"]
    write_map(b / "wav.scp", {"recB": rec})
    write_map(b / "segments", {"t0-seg1": "recB 0.0 0.5", "t0-seg2": "recB 0.5 1.0"})
    write_map(b / "utt2spk", {"t0-seg1": "t0", "t0-seg2": "t0"})
    write_map(b / "utt2dur", {"t0-seg1": "0.5", "t0-seg2": "0.5"})
    write_map(b / "spk2utt", {"t0": "t0-seg1 t0-seg2"})
    write_map(b / "spk2gender", {"t0": "f"})
    assert stage.main([str(tmp_path / "all"), str(a), str(b)]) == 0
    d = DataDir.load(tmp_path / "all")
    assert d.segments == {"s0-u0": ("s0-u0", 0.0, -1.0), "t0-seg1": ("recB", 0.0, 0.5),
                          "t0-seg2": ("recB", 0.5, 1.0)}
    assert set(d.wav_scp) == {"s0-u0", "recB"}
    assert not [p for p in validate_data_dir(tmp_path / "all") if p.severity == "error"]
    from deepspeaker.data import iter_audio

    lens = {u: len(x) for u, x, e in iter_audio(d)}
    assert lens == {"s0-u0": 16000, "t0-seg1": 8000, "t0-seg2": 8000}


def test_fix_data_dir_filters_utt2aug(tmp_path):
    """utt2aug is a data-dir file like utt2uniq: fix_data_dir keeps only the utterances left."""
    import subprocess
    from pathlib import Path
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("s1-a /x/a.wav\ns1-b /x/b.wav\n")
    (d / "utt2spk").write_text("s1-a s1\ns1-b s1\ns1-c s1\n")
    (d / "utt2aug").write_text("s1-a kind=noise seed=0 snr=5\ns1-b kind=reverb seed=0\n"
                               "s1-c kind=music seed=0 snr=8\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["bash", str(root / "utils/fix_data_dir.sh"), str(d)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (d / "utt2aug").read_text() == ("s1-a kind=noise seed=0 snr=5\n"
                                           "s1-b kind=reverb seed=0\n")
    assert "s1-c" not in (d / "utt2spk").read_text()


def test_corpus_prefixes_keep_same_named_speakers_apart(tmp_path, capfd):
    """--prefix per source (copy_data_dir.sh --utt-prefix --spk-prefix, then combine): two
    corpora with the same speaker and utterance ids become two sets of speakers."""
    a = make_data(tmp_path, "a", num_spk=2)
    b = make_data(tmp_path / "x", "b", num_spk=2)
    write_map(b / "utt2uniq", {u: u for u in read_map(b / "utt2spk")})
    write_map(a / "utt2uniq", {u: u for u in read_map(a / "utt2spk")})
    assert stage.main(["--prefix", "so-", "--prefix", "ls-", str(tmp_path / "all"),
                       str(a), str(b)]) == 0
    d = DataDir.load(tmp_path / "all")
    assert d.spk2utt["so-s1"] == ["so-s1-u0", "so-s1-u1"]
    assert d.spk2utt["ls-s1"] == ["ls-s1-u0", "ls-s1-u1"] and len(d.spk2utt) == 4
    assert d.spk2gender == {"so-s0": "m", "so-s1": "f", "ls-s0": "m", "ls-s1": "f"}
    assert d.utt2uniq["ls-s0-u1"] == "ls-s0-u1"
    assert d.wav_scp["ls-s0-u0"] == read_map(b / "wav.scp")["s0-u0"]
    assert not [p for p in validate_data_dir(tmp_path / "all") if p.severity == "error"]
    # A segmented source keeps its recording ids; its segments name them.
    write_map(b / "wav.scp", {"recB": read_map(b / "wav.scp")["s0-u0"]})
    write_map(b / "segments", {u: "recB 0.0 0.5" for u in read_map(b / "utt2spk")})
    assert stage.main(["--prefix", "so-", "--prefix", "ls-", str(tmp_path / "seg"),
                       str(a), str(b)]) == 0
    d = DataDir.load(tmp_path / "seg")
    assert d.segments["ls-s1-u0"] == ("recB", 0.0, 0.5) and "recB" in d.wav_scp
    # One prefix for two sources, or an empty one: one line each, nothing written.
    capfd.readouterr()
    assert stage.main(["--prefix", "so-", str(tmp_path / "bad"), str(a), str(b)]) == 1
    assert stage.main(["--prefix", "", "--prefix", "ls-", str(tmp_path / "bad"), str(a), str(b)]) == 1
    err = capfd.readouterr().err
    assert "1 prefixes for 2 source dirs" in err and "prefix '' must be non-empty" in err
    assert "Traceback" not in err and not (tmp_path / "bad" / "utt2spk").exists()
