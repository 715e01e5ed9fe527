#!/usr/bin/env python3
"""Kaldi data dirs for VoxCeleb1 (and VoxCeleb2 dev) from the corpus' own layout on disk.

    python local/prepare_data.py --vox1-dir DIR1 [--vox2-dir DIR2] --data-dir data \\
        [--trial-lists DIR] [--train-vox1 {dev,none}]

Layouts read (the ones the download scripts and the zip files produce):

* VoxCeleb1, wav: ``DIR1/wav/<spk>/<youtube_id>/<nnnnn>.wav``, or the dev and test
  zips unpacked side by side, ``DIR1/dev/wav/...`` and ``DIR1/test/wav/...``;
* VoxCeleb2 dev, m4a (optional): ``DIR2/dev/aac/<spk>/<youtube_id>/<nnnnn>.m4a`` or
  ``DIR2/aac/...``; decoded when features are computed, through a wav.scp pipe
  ``ffmpeg -nostdin -v error -i <path> -f wav -ac 1 -ar 16000 - |``;
* the official trial lists in ``--trial-lists`` (default DIR1), lines
  ``1|0 id10270/5r0dWxy17C8/00001.wav id10270/...``: ``veri_test2.txt`` (Vox1-O),
  ``list_test_all2.txt`` (Vox1-E), ``list_test_hard2.txt`` (Vox1-H); the cleaned
  lists (with the '2') are preferred, the original ones are used when alone.

Data dirs written (utterance ids ``<spk>-<youtube_id>-<nnnnn>``, absolute paths):

* ``data/vox1_test``: the 40 VoxCeleb1 test speakers (id10270..id10309), with the
  Vox1-O list as ``trials_vox1_o`` when veri_test(2).txt is there.  The test
  speakers are those of veri_test(2).txt, else those under ``DIR1/test/wav``;
* ``data/vox1_all``: every VoxCeleb1 speaker, with ``trials_vox1_e`` and
  ``trials_vox1_h``; only when one of those lists is there;
* ``data/train``: VoxCeleb2 dev plus the VoxCeleb1 speakers that are not test
  speakers (``--train-vox1 dev``, the common "Vox2 dev + Vox1 dev" recipe), or
  VoxCeleb2 dev alone (``--train-vox1 none``; then Vox1-E/H are fair tests).

Trials are in Kaldi's form ``enroll test target|nontarget``, in the order of the
official list.  The paper's 1 + 99 trials for vox1_test are made by stage 2.

Every check (layout, empty speaker folders, each trial line and the file it names,
ffmpeg for m4a) is done before anything is written, and the data dirs are published
together, each whole (deepspeaker.data.prep.publish_sets), so a failed run leaves
data/ as it was.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script without path.sh: find the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from deepspeaker.bin._cli import run_main  # noqa: E402
from deepspeaker.data.kaldi_dir import sorted_ids  # noqa: E402
from deepspeaker.data.prep import (DataPrepError, PreparedSet, TrialList,  # noqa: E402
                                   kaldi_trials, publish_sets, read_list, trial_kind)

logger = logging.getLogger(__name__)

# Where each part may sit, relative to the corpus dir, in the order they are looked for.
VOX1_LAYOUTS = ("wav", "dev/wav", "test/wav")
VOX1_TEST_LAYOUT = "test/wav"
VOX2_LAYOUTS = ("dev/aac", "aac")

# Trial list name in our data dir -> official file names, cleaned list first.
TRIAL_LISTS = {
    "trials_vox1_o": ("veri_test2.txt", "veri_test.txt"),
    "trials_vox1_e": ("list_test_all2.txt", "list_test_all.txt"),
    "trials_vox1_h": ("list_test_hard2.txt", "list_test_hard.txt"),
}


def ffmpeg_pipe(path: Path) -> str:
    """The wav.scp value that decodes one m4a to 16 kHz mono wav on stdout.

    ``-nostdin`` keeps ffmpeg from eating the input of a surrounding shell loop;
    ``-v error`` keeps its banner out of the logs while errors still reach stderr.
    """
    return f"ffmpeg -nostdin -v error -i {shlex.quote(str(path))} -f wav -ac 1 -ar 16000 - |"


@dataclass
class Part:
    """One corpus (VoxCeleb1 or 2) as found on disk."""

    name: str
    utt2path: dict[str, Path] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    spk2root: dict[str, Path] = field(default_factory=dict)
    # "spk/youtube_id/nnnnn.ext", as the official trial lists name files -> utterance id
    rel2utt: dict[str, str] = field(default_factory=dict)

    def speakers(self) -> list[str]:
        return sorted_ids(self.spk2root)


def _entries(d: Path, *, dirs: bool) -> list[os.DirEntry]:
    """Visible subdirectories (or files) of ``d``, by name; os.scandir because VoxCeleb2
    dev holds over a million files and a stat per file would dominate the scan."""
    with os.scandir(d) as it:
        out = [e for e in it if not e.name.startswith(".")
               and (e.is_dir() if dirs else e.is_file())]
    return sorted(out, key=lambda e: e.name)


def _check_id(name: str, path: Path) -> None:
    if not name or any(c.isspace() for c in name):
        raise DataPrepError(f"{path}: name {name!r} is empty or has whitespace; it cannot be "
                            "part of a Kaldi id")


def scan_part(name: str, corpus_dir: Path, layouts: Sequence[str], suffix: str,
              flag: str) -> Part:
    """Every ``<spk>/<youtube_id>/<nnnnn><suffix>`` under the layouts of ``corpus_dir``.

    A speaker folder with no such file is an error rather than a silent gap: it is
    usually a download or unzip that stopped half way.
    """
    if not corpus_dir.is_dir():
        raise DataPrepError(f"{corpus_dir}: {name} directory not found (given as {flag})")
    roots = [corpus_dir / lay for lay in layouts if (corpus_dir / lay).is_dir()]
    if not roots:
        wanted = " or ".join(f"{corpus_dir / lay}/<spk>/<youtube_id>/<nnnnn>{suffix}"
                             for lay in layouts)
        raise DataPrepError(f"{corpus_dir}: no {name} audio folder; expected {wanted}")
    part = Part(name)
    for root in roots:
        for spk_entry in _entries(root, dirs=True):
            spk, spk_dir = spk_entry.name, Path(spk_entry.path)
            _check_id(spk, spk_dir)
            if spk in part.spk2root:
                raise DataPrepError(f"{spk_dir}: speaker {spk} is also under "
                                    f"{part.spk2root[spk]}; keep one copy of it")
            part.spk2root[spk] = root
            found = 0
            for video in _entries(spk_dir, dirs=True):
                _check_id(video.name, Path(video.path))
                for f in _entries(Path(video.path), dirs=False):
                    if not f.name.endswith(suffix):
                        continue
                    stem = f.name[:-len(suffix)]
                    _check_id(stem, Path(f.path))
                    utt = f"{spk}-{video.name}-{stem}"
                    if utt in part.utt2path:
                        raise DataPrepError(f"{f.path}: utterance id {utt} is also that of "
                                            f"{part.utt2path[utt]}")
                    part.utt2path[utt] = Path(f.path)
                    part.utt2spk[utt] = spk
                    part.rel2utt[f"{spk}/{video.name}/{f.name}"] = utt
                    found += 1
            if not found:
                raise DataPrepError(f"{spk_dir}: speaker folder holds no {suffix} file "
                                    f"(expected <youtube_id>/<nnnnn>{suffix}); an unfinished "
                                    "download or unzip?")
        if not any(r == root for r in part.spk2root.values()):
            raise DataPrepError(f"{root}: no speaker folder in it (expected "
                                f"<spk>/<youtube_id>/<nnnnn>{suffix})")
    logger.info("%s: %d utterances of %d speakers under %s", name, len(part.utt2path),
                len(part.spk2root), ", ".join(map(str, roots)))
    return part


def find_trial_lists(trial_dir: Path) -> dict[str, Path]:
    """Our trial file name -> the official list to convert, the cleaned one when both exist."""
    found = {}
    for ours, names in TRIAL_LISTS.items():
        present = [trial_dir / n for n in names if (trial_dir / n).is_file()]
        if present:
            found[ours] = present[0]
            if len(present) > 1:
                logger.info("%s: using the cleaned list %s, not %s", ours, present[0].name,
                            present[1].name)
    return found


def convert_trial_list(path: Path, vox1: Part) -> TrialList:
    """Official ``label path1 path2`` lines -> Kaldi trials on our utterance ids.

    Every file a trial names must be on disk (deepspeaker.data.prep.kaldi_trials says
    why, and checks the labels against the speakers).
    """
    roots = ", ".join(sorted({str(r) for r in vox1.spk2root.values()}))

    def rows():
        for where, (label, *files) in read_list(path, 3, "label path1 path2"):
            kind = trial_kind(label, where)
            utts = []
            for rel in files:
                utt = vox1.rel2utt.get(rel)
                if utt is None:
                    raise DataPrepError(f"{where}: {rel}: file not on disk "
                                        f"(looked under {roots})")
                utts.append(utt)
            yield where, kind, utts[0], utts[1], " ".join(files)

    return kaldi_trials(path, rows(), vox1.utt2spk)


def check_ffmpeg(vox2: Part, vox2_dir: Path) -> None:
    """m4a needs ffmpeg at feature time; say so now, before anything is written."""
    if vox2.utt2path and shutil.which("ffmpeg") is None:
        raise DataPrepError(
            f"{vox2_dir}: VoxCeleb2 is m4a ({len(vox2.utt2path)} files) and ffmpeg, needed to "
            "decode m4a, is not on PATH. Install ffmpeg (e.g. 'apt-get install ffmpeg' or "
            "'conda install -c conda-forge ffmpeg') and rerun, or drop --vox2-dir to prepare "
            "VoxCeleb1 only")


def _subset(part: Part, speakers: set[str]) -> dict[str, str]:
    return {u: s for u, s in part.utt2spk.items() if s in speakers}


def prepare_voxceleb(vox1_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                     vox2_dir: str | os.PathLike | None = None,
                     trial_dir: str | os.PathLike | None = None,
                     train_vox1: str = "dev") -> dict[str, int]:
    """Scan, check, convert; then publish each data dir.  Returns utterances per set."""
    if train_vox1 not in ("dev", "none"):
        raise DataPrepError(f"--train-vox1 must be dev or none, got {train_vox1!r}")
    vox1_dir = Path(vox1_dir).absolute()
    data_dir = Path(data_dir)

    if not vox1_dir.is_dir():
        raise DataPrepError(f"{vox1_dir}: VoxCeleb1 directory not found (given as --vox1-dir)")
    if trial_dir is None:
        trial_dir = vox1_dir
    else:
        trial_dir = Path(trial_dir)
        if not trial_dir.is_dir():
            raise DataPrepError(f"{trial_dir}: trial list directory not found (--trial-lists)")
    list_paths = find_trial_lists(trial_dir)
    if not list_paths:
        names = ", ".join(n for names in TRIAL_LISTS.values() for n in names)
        msg = f"{trial_dir}: no official trial list in it (looked for {names})"
        if trial_dir != vox1_dir:  # asked for explicitly: a wrong dir, not a choice
            raise DataPrepError(msg)
        logger.warning("%s; no Vox1-O/E/H trials will be written", msg)

    vox1 = scan_part("VoxCeleb1", vox1_dir, VOX1_LAYOUTS, ".wav", "--vox1-dir")
    vox2 = None
    if vox2_dir is not None:
        vox2_dir = Path(vox2_dir).absolute()
        vox2 = scan_part("VoxCeleb2", vox2_dir, VOX2_LAYOUTS, ".m4a", "--vox2-dir")
        check_ffmpeg(vox2, vox2_dir)
        both = sorted_ids(set(vox1.spk2root) & set(vox2.spk2root))
        if both:
            raise DataPrepError(f"{vox2_dir}: speaker {both[0]} is in both VoxCeleb1 "
                                f"({vox1.spk2root[both[0]] / both[0]}) and VoxCeleb2 "
                                f"({len(both)} shared speakers); is one dir given twice?")

    trials = {ours: convert_trial_list(p, vox1) for ours, p in list_paths.items()}

    layout_test = {s for s, r in vox1.spk2root.items() if r == vox1_dir / VOX1_TEST_LAYOUT}
    if "trials_vox1_o" in trials:
        test_spk = trials["trials_vox1_o"].speakers
        if layout_test and layout_test != test_spk:
            logger.warning("%s holds %d speakers but %s names %d; the list decides", vox1_dir /
                           VOX1_TEST_LAYOUT, len(layout_test), list_paths["trials_vox1_o"].name,
                           len(test_spk))
    elif layout_test:
        test_spk = layout_test
        logger.info("no veri_test list: the test speakers are those of %s",
                    vox1_dir / VOX1_TEST_LAYOUT)
    else:
        raise DataPrepError(
            f"{trial_dir}: cannot tell the VoxCeleb1 test speakers: neither veri_test2.txt nor "
            f"veri_test.txt is there, and {vox1_dir} has no test/wav folder. Put veri_test2.txt "
            "(from the VoxCeleb1 page) in it or pass --trial-lists DIR")

    def wav_entry(utt: str) -> str:
        if vox2 is not None and utt in vox2.utt2path:
            return ffmpeg_pipe(vox2.utt2path[utt])
        return str(vox1.utt2path[utt])

    def prepared(utt2spk: dict[str, str], trial_names: Sequence[str]) -> PreparedSet:
        return PreparedSet({u: wav_entry(u) for u in utt2spk}, utt2spk, extra_files={
            k: trials[k].text for k in trial_names if k in trials})

    sets: dict[str, PreparedSet] = {}
    sets["vox1_test"] = prepared(_subset(vox1, test_spk), ["trials_vox1_o"])
    eh = [k for k in ("trials_vox1_e", "trials_vox1_h") if k in trials]
    if eh:
        sets["vox1_all"] = prepared(dict(vox1.utt2spk), eh)
    elif (data_dir / "vox1_all").exists():
        logger.warning("%s: left as it is (no Vox1-E/H list this time)", data_dir / "vox1_all")

    train = {}
    if vox2 is not None:
        train.update(vox2.utt2spk)
    if train_vox1 == "dev":
        vox1_dev = set(vox1.spk2root) - test_spk
        if not vox1_dev:
            logger.warning("VoxCeleb1 has no speaker besides the test speakers: %s gets none "
                           "of it", data_dir / "train")
        train.update(_subset(vox1, vox1_dev))
        if eh and vox1_dev:
            logger.warning("%s holds the VoxCeleb1 dev speakers that Vox1-E/H test on; use "
                           "--train-vox1 none for a fair Vox1-E/H evaluation", data_dir / "train")
    if not train:
        raise DataPrepError(f"{data_dir / 'train'}: no training utterances: --train-vox1 none "
                            "and no --vox2-dir")
    sets["train"] = prepared(train, [])

    publish_sets(data_dir, sets)
    counts = {name: len(s.utt2spk) for name, s in sets.items()}
    logger.info("VoxCeleb data prep done: %s", ", ".join(f"{data_dir / n} ({c} utterances)"
                                                       for n, c in counts.items()))
    return counts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--vox1-dir", required=True,
                   help="VoxCeleb1: holds wav/<spk>/... or dev/wav/... and test/wav/...")
    p.add_argument("--vox2-dir", default=None,
                   help="VoxCeleb2 (optional): holds dev/aac/<spk>/... or aac/<spk>/...")
    p.add_argument("--data-dir", required=True,
                   help="writes DATA_DIR/{vox1_test,vox1_all,train}")
    p.add_argument("--trial-lists", default=None,
                   help="dir of veri_test2.txt, list_test_all2.txt, list_test_hard2.txt "
                        "(default: --vox1-dir)")
    p.add_argument("--train-vox1", choices=("dev", "none"), default="dev",
                   help="VoxCeleb1 speakers in data/train: those not in vox1_test, or none")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: prepare_voxceleb(args.vox1_dir, args.data_dir,
                                             vox2_dir=args.vox2_dir, trial_dir=args.trial_lists,
                                             train_vox1=args.train_vox1), argv)


if __name__ == "__main__":
    sys.exit(main())
