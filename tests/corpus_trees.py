"""Tiny fake trees of the real corpora's own layouts, for the data-prep tests and the
recipe stage-0 tests.

LibriSpeech (``<subset>/<spk>/<chapter>/*.flac`` and SPEAKERS.TXT), VoxCeleb1/2
(``wav/<spk>/<youtube_id>/<nnnnn>.wav``, the dev/ + test/ split, VoxCeleb2's
``dev/aac/...`` m4a) with official-format trial lists, and CN-Celeb
(``CN-Celeb_flac/{data,dev,eval}/...`` with its lists), with the ids and Kaldi trial
lines the prep scripts must give for them; librispeech-mini (``<spk>/*_seg<k>.flac``
and SPEAKERS.tsv); speechocean762 (``WAVE/SPEAKER<spk>/<utt>.flac``
or ``.WAV`` and the Kaldi-style lists of ``train/`` and ``test/``).  tests/test_prep_*.py and
tests/test_recipes_stage0.py import them from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


# ---------------------------------------------------------------- LibriSpeech

def write_flac(path: Path, num_samples: int, seed: int) -> None:
    """Noise, 16 kHz mono PCM_16 FLAC (or WAV, by the suffix in any case), as the corpora are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = (np.random.default_rng(seed).standard_normal(num_samples) * 3000).astype(np.int16)
    fmt = "WAV" if path.suffix.lower() == ".wav" else "FLAC"
    sf.write(str(path), audio, SR, subtype="PCM_16", format=fmt)


def snapshot(data: Path) -> dict[str, str]:
    """Every file under ``data`` (hidden ones included) -> its text."""
    return {str(p.relative_to(data)): p.read_text() for p in sorted(data.rglob("*")) if p.is_file()}


SPEAKERS_TXT_HEAD = """\
; Some pipe(|) separated metadata about all LibriVox readers, whose work was used
; in the corpus.
;
; The meaning of the fields in left-to-right order is as follows:
;
; reader_id: the ID of the reader in the LibriVox's database
; gender: 'F' for female, 'M' for male
; subset: the corpus subset to which the reader's audio is assigned
; duration: total number of minutes of speech by the reader, included in the corpus
; name: the name under which the reader is registered in LibriVox
;
;ID  |SEX| SUBSET           |MINUTES| NAME
"""
# (id, sex, subset, name): a name with spaces, one with '|' (as reader 60's is), and a
# reader of a subset the fake tree does not have.
READERS = [
    ("14", "F", "train-clean-360", "Kristin LeMoine"),
    ("19", "F", "train-clean-100", "Kara Shallenberg"),
    ("60", "M", "train-clean-100", "|CBW|Simon"),
    ("84", "F", "dev-clean", "Christie Nowak"),
    ("103", "F", "train-clean-100", "Karen Savage"),
    ("121", "F", "test-clean", "Nicodemus"),
    ("1034", "M", "train-clean-100", "Kevin O'Coin"),
    ("1089", "M", "test-clean", "Bill Boerst"),
]
# subset -> speaker -> chapter -> utterances; "103" and "1034" check bytewise order.
LS_TREE = {
    "train-clean-100": {"19": {"198": 2, "227": 1}, "60": {"121082": 1}, "103": {"1240": 2},
                        "1034": {"121119": 1}},
    "dev-clean": {"84": {"121123": 2}},
    "test-clean": {"121": {"121726": 2}, "1089": {"134686": 1, "134691": 1}},
}
LS_ARGS = ["--train-subsets", "train-clean-100", "--dev-subsets", "dev-clean",
           "--eval-subsets", "test-clean"]
LS_SETS = {"train": "train-clean-100", "dev": "dev-clean", "eval": "test-clean"}


# ---------------------------------------------------------------- librispeech-mini

TSV_HEADER = ("speaker\tgender\tlibrispeech_subset\tlibrispeech_minutes\treader_name\tn_utts\t"
              "total_dur_s\tsource_utt\tsource_dur_s\n")
# speaker -> (sex, chapter, segment indices): 6 women and 6 men, one of each with a
# single segment (never eval or dev); "103"/"1034" check bytewise order.
MINI = {
    "19": ("F", "198", [0]),
    "32": ("F", "21625", [0, 2, 3]),
    "40": ("F", "222", [0, 3]),
    "103": ("F", "1240", [0, 3]),
    "1069": ("F", "133699", [0, 3]),
    "211": ("F", "122425", [0, 1, 2]),
    "26": ("M", "495", [0]),
    "27": ("M", "123349", [0, 3]),
    "1034": ("M", "121119", [0, 1]),
    "1081": ("M", "125237", [0, 2]),
    "118": ("M", "47824", [0, 4]),
    "200": ("M", "126784", [0, 1, 2]),
}
SINGLE = {"19", "26"}


def mini_utt(spk: str, k: int, speakers: dict | None = None) -> str:
    return f"{spk}-{(MINI if speakers is None else speakers)[spk][1]}-0000_seg{k}"


def make_mini(root: Path, speakers: dict | None = None, samples: int = 8000) -> Path:
    """librispeech-mini's ``<spk>/<utt>_seg<k>.flac`` and SPEAKERS.tsv for ``speakers``
    (default MINI), the n-th file ``samples + 400 n`` samples long."""
    speakers = MINI if speakers is None else speakers
    n = 0
    rows = []
    for spk, (sex, chapter, segs) in speakers.items():
        for k in segs:
            write_flac(root / spk / f"{mini_utt(spk, k, speakers)}.flac", samples + 400 * n, n)
            n += 1
        rows.append(f"{spk}\t{sex}\ttrain-clean-100\t25.19\tReader {spk}\t{len(segs)}\t"
                    f"{len(segs) * 0.5:.2f}\t{spk}-{chapter}-0000\t9.99\n")
    (root / "SPEAKERS.tsv").write_text(TSV_HEADER + "".join(rows))
    # What the real folder has beside the audio: ignored by the prep.
    (root / "README.md").write_text("# fake\n")
    (root / "wav.scp").write_text("")
    return root



def speakers_txt_line(spk: str, sex: str, subset: str, name: str) -> str:
    return f"{spk:<5}| {sex} | {subset:<16} | 25.03 | {name}\n"


def make_librispeech(root: Path) -> Path:
    """``root/LibriSpeech`` with LS_TREE and SPEAKERS.TXT; returns the LibriSpeech dir."""
    ls = root / "LibriSpeech"
    n = 0
    for subset, speakers in LS_TREE.items():
        for spk, chapters in speakers.items():
            for chapter, count in chapters.items():
                d = ls / subset / spk / chapter
                for i in range(count):
                    write_flac(d / f"{spk}-{chapter}-{i:04d}.flac", 8000 + 800 * n, n)
                    n += 1
                (d / f"{spk}-{chapter}.trans.txt").write_text(
                    "".join(f"{spk}-{chapter}-{i:04d} SOME WORDS\n" for i in range(count)))
    (ls / "SPEAKERS.TXT").write_text(
        SPEAKERS_TXT_HEAD + "".join(speakers_txt_line(*r) for r in READERS))
    return ls


def ls_expected(ls: Path, subset: str) -> dict[str, Path]:
    """Utterance id -> flac of a subset of LS_TREE."""
    ids = [(spk, chapter, f"{spk}-{chapter}-{i:04d}")
           for spk, chapters in LS_TREE[subset].items()
           for chapter, count in chapters.items() for i in range(count)]
    return {utt: ls / subset / spk / chapter / f"{utt}.flac" for spk, chapter, utt in ids}


# ------------------------------------------------------------------- VoxCeleb

# spk -> {youtube_id: [nnnnn, ...]}; youtube ids with '-' and '_' as the real ones have.
VOX1_DEV = {
    "id10001": {"1zcIwhmdeo4": ["00001", "00002"], "7w0IBEWc9Qw": ["00001"]},
    "id10002": {"-Ab_c-d9XyZ": ["00001", "00003"]},
}
VOX1_TEST = {
    "id10270": {"5r0dWxy17C8": ["00001", "00002"], "x6uYqmx31kE": ["00001"]},
    "id10271": {"1gtz-CUIygI": ["00001"], "_9Lnx1GLdF0": ["00002"]},
}
VOX2_DEV = {
    "id00012": {"21Uxsk56VDQ": ["00001", "00002"]},
    "id00015": {"0fijmz4vTVU": ["00001"]},
}

VERI_TEST2 = """\
1 id10270/5r0dWxy17C8/00001.wav id10270/x6uYqmx31kE/00001.wav
0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav
1 id10271/_9Lnx1GLdF0/00002.wav id10271/1gtz-CUIygI/00001.wav
0 id10271/_9Lnx1GLdF0/00002.wav id10270/5r0dWxy17C8/00002.wav
"""
VERI_TEST2_KALDI = [
    "id10270-5r0dWxy17C8-00001 id10270-x6uYqmx31kE-00001 target",
    "id10270-5r0dWxy17C8-00001 id10271-1gtz-CUIygI-00001 nontarget",
    "id10271-_9Lnx1GLdF0-00002 id10271-1gtz-CUIygI-00001 target",
    "id10271-_9Lnx1GLdF0-00002 id10270-5r0dWxy17C8-00002 nontarget",
]
LIST_ALL2 = """\
1 id10001/1zcIwhmdeo4/00001.wav id10001/7w0IBEWc9Qw/00001.wav
0 id10002/-Ab_c-d9XyZ/00003.wav id10270/5r0dWxy17C8/00002.wav
"""
LIST_ALL2_KALDI = [
    "id10001-1zcIwhmdeo4-00001 id10001-7w0IBEWc9Qw-00001 target",
    "id10002--Ab_c-d9XyZ-00003 id10270-5r0dWxy17C8-00002 nontarget",
]
LIST_HARD2 = "0 id10001/1zcIwhmdeo4/00002.wav id10002/-Ab_c-d9XyZ/00001.wav\n"
LIST_HARD2_KALDI = ["id10001-1zcIwhmdeo4-00002 id10002--Ab_c-d9XyZ-00001 nontarget"]


def utt_ids(tree: dict) -> list[str]:
    return sorted(f"{spk}-{yt}-{n}" for spk, videos in tree.items()
                  for yt, ns in videos.items() for n in ns)


def write_tree(root: Path, tree: dict, suffix: str) -> None:
    t = np.arange(int(0.3 * SR)) / SR
    for i, (spk, videos) in enumerate(tree.items()):
        for yt, ns in videos.items():
            for n in ns:
                path = root / spk / yt / f"{n}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if suffix == ".wav":
                    sf.write(str(path), 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t), SR,
                             subtype="PCM_16")
                else:  # never decoded by the tests
                    path.write_bytes(b"not really aac")


def make_vox1(base: Path, layout: str = "flat", lists: dict[str, str] | None = None) -> Path:
    vox1 = base / "vox1"
    if layout == "flat":
        write_tree(vox1 / "wav", {**VOX1_DEV, **VOX1_TEST}, ".wav")
    else:
        write_tree(vox1 / "dev" / "wav", VOX1_DEV, ".wav")
        write_tree(vox1 / "test" / "wav", VOX1_TEST, ".wav")
    defaults = {"veri_test2.txt": VERI_TEST2, "list_test_all2.txt": LIST_ALL2,
                "list_test_hard2.txt": LIST_HARD2}
    for name, text in (defaults if lists is None else lists).items():
        (vox1 / name).write_text(text)
    return vox1


def make_vox2(base: Path, layout: str = "dev/aac") -> Path:
    vox2 = base / "vox 2"  # a space: wav.scp pipes must quote the path
    write_tree(vox2 / layout, VOX2_DEV, ".m4a")
    return vox2


def fake_ffmpeg(base: Path) -> Path:
    """A dir holding an executable named ffmpeg: the script only checks it is on PATH."""
    d = base / "bin"
    d.mkdir()
    (d / "ffmpeg").write_text("#!/bin/sh\nexit 1\n")
    (d / "ffmpeg").chmod(0o755)
    return d


# ------------------------------------------------------------------- CN-Celeb

TRAIN = {"id00000": ["singing-01-001", "speech-02-003"], "id00001": ["interview-01-001"]}
EVAL_SPK = ("id00800", "id00801")
TEST_FILES = ["id00800-singing-01-001", "id00800-interview-02-003", "id00801-drama-01-001"]
TRIALS = [("id00800-enroll", "id00800-singing-01-001", 1),
          ("id00800-enroll", "id00801-drama-01-001", 0),
          ("id00801-enroll", "id00800-interview-02-003", 0),
          ("id00801-enroll", "id00801-drama-01-001", 1)]
TRIALS_KALDI = [f"{e} {t} {'target' if lab else 'nontarget'}" for e, t, lab in TRIALS]


def write_audio(path: Path, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.3 * SR)) / SR
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * freq * t), SR, subtype="PCM_16")


def make_cnc1(base: Path, folder: str = "CN-Celeb_flac", ext: str = ".flac",
              dev_lst: bool = True) -> Path:
    root = base / "cnc1" / folder
    for i, (spk, stems) in enumerate(TRAIN.items()):
        for stem in stems:
            write_audio(root / "data" / spk / f"{stem}{ext}", 150 + 40 * i)
    for spk in EVAL_SPK:  # data/ holds the eval speakers too, as the release does
        write_audio(root / "data" / spk / f"speech-01-001{ext}", 300)
        write_audio(root / "eval" / "enroll" / f"{spk}-enroll{ext}", 300)
    for stem in TEST_FILES:
        write_audio(root / "eval" / "test" / f"{stem}{ext}", 300)
    lists = root / "eval" / "lists"
    lists.mkdir(parents=True)
    (lists / "enroll.lst").write_text(
        "".join(f"{spk}-enroll enroll/{spk}-enroll{ext}\n" for spk in EVAL_SPK))
    (lists / "test.lst").write_text("".join(f"test/{stem}{ext}\n" for stem in TEST_FILES))
    (lists / "trials.lst").write_text(
        "".join(f"{e} test/{t}{ext} {lab}\n" for e, t, lab in TRIALS))
    if dev_lst:
        (root / "dev").mkdir()
        (root / "dev" / "dev.lst").write_text("".join(f"{spk}\n" for spk in TRAIN))
    return base / "cnc1"


def train_ids(tree: dict) -> list[str]:
    return sorted(f"{spk}-{stem}" for spk, stems in tree.items() for stem in stems)


EVAL_IDS = sorted([f"{spk}-enroll" for spk in EVAL_SPK] + TEST_FILES)


# ---------------------------------------------------------------- speechocean762

# speaker -> (gender, age): 4 children, 2 teens and 4 adults of each gender.
SO_TRAIN = {
    "0011": ("f", 6), "0012": ("f", 8), "0013": ("f", 10), "0014": ("f", 12),
    "0021": ("m", 5), "0022": ("m", 7), "0023": ("m", 9), "0024": ("m", 11),
    "0031": ("f", 13), "0032": ("f", 17), "0041": ("m", 14), "0042": ("m", 16),
    "0051": ("f", 18), "0052": ("f", 24), "0053": ("f", 31), "0054": ("f", 43),
    "0061": ("m", 19), "0062": ("m", 22), "0063": ("m", 28), "0064": ("m", 37),
}
SO_TEST = {"0071": ("f", 9), "0072": ("m", 10), "0081": ("f", 27), "0082": ("m", 33)}
SO_UTTS = 3  # per speaker
SO_LISTS = ("wav.scp", "utt2spk", "spk2utt", "spk2gender", "spk2age", "text")


def so_utt(spk: str, k: int) -> str:
    """The corpus' own utterance id (speaker 0001's third: 000010002)."""
    return f"{int(spk):05d}{k:04d}"


def so_kaldi_ids(speakers: dict) -> list[str]:
    """The ids the prep must write, ``<spk>-<utt>``, sorted."""
    return sorted(f"{spk}-{so_utt(spk, k)}" for spk in speakers for k in range(SO_UTTS))


def make_speechocean762(root: Path, suffix: str = ".flac", split: str = "train",
                        speakers: dict | None = None, listed_suffix: str | None = None) -> Path:
    """``root/WAVE/SPEAKER<spk>/<utt><suffix>`` and ``root/<split>/`` with the six lists.

    As in the corpus: tab-separated wav.scp, spk2age, spk2gender and text, spk2age not
    sorted.  ``listed_suffix``: the extension wav.scp names (default: ``suffix``).
    """
    speakers = SO_TRAIN if speakers is None else speakers
    lines: dict[str, list[str]] = {name: [] for name in SO_LISTS}
    for n, (spk, (gender, age)) in enumerate(speakers.items()):
        utts = [so_utt(spk, k) for k in range(SO_UTTS)]
        for k, utt in enumerate(utts):
            write_flac(root / "WAVE" / f"SPEAKER{spk}" / f"{utt}{suffix}",
                       4000 + 160 * k + 40 * n, 100 * n + k)
            lines["wav.scp"].append(f"{utt}\tWAVE/SPEAKER{spk}/{utt}{listed_suffix or suffix}")
            lines["utt2spk"].append(f"{utt} {spk}")
            lines["text"].append(f"{utt}\tREAD  WORD {k} BY {spk}")
        lines["spk2utt"].append(f"{spk} {' '.join(utts)}")
        lines["spk2gender"].append(f"{spk}\t{gender}")
        lines["spk2age"].insert(0, f"{spk}\t{age}")
    (root / split).mkdir(parents=True)
    for name, rows in lines.items():
        (root / split / name).write_text("".join(f"{row}\n" for row in rows))
    return root
