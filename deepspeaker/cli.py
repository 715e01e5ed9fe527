"""The ``deepspeaker`` console command: a trained system on your own audio.

    deepspeaker embed    EXP FILE... | --wav-scp F | --data-dir D  [--out ark,scp:E.ark,E.scp]
    deepspeaker enroll   EXP --store S --name NAME FILE...   (or --spk2utt F with --wav-scp / --data-dir)
    deepspeaker verify   EXP ENROLL TEST [--threshold far_1pct]  (--store S: ENROLL is a speaker)
    deepspeaker verify   EXP --trials TRIALS --scores OUT (--wav-scp F | --data-dir D) [--store S]
    deepspeaker identify EXP --store S FILE... [--top 5]
    deepspeaker export   EXP [--format onnx|torchscript|kaldi] [--out PATH]

``EXP`` is a trained ``exp/<tag>`` dir (:func:`deepspeaker.load`: a network, the
i-vector system or a fusion); ``--method`` picks its back end (default: ``plda`` where
it has one), ``--asnorm`` its AS-normalised scores (where the recipe saved a cohort).  Inputs are files (keyed by their name without extension), a
``wav.scp`` (``utt path`` or ``utt command |``) or a data dir (its wav.scp and
segments, at the system's sample rate as stage 1 reads them).  Outputs are text on
stdout (Kaldi's ``key  [ v1 v2 ... ]`` for vectors), ``--format json``, or Kaldi
ark/scp (``--out ark,scp:E.ark,E.scp`` or ``--out-ark``/``--out-scp``).  ``verify
--trials`` scores a Kaldi trial list (``enroll test``, a third column is ignored)
into a Kaldi score file (``enroll test score``); an enroll id is a speaker of
``--store``, a model of ``--enroll2utt``, or an utterance.

An utterance that cannot be used (unreadable, silent, too short) is one message
naming it; the others finish, and the command exits 1 after saying how many failed.
A trial that needs it is left out and listed in ``OUT.skipped``, as the scorers do.
A progress bar appears on stderr for long lists when stderr is a terminal.

Adding a subcommand is one function decorated with :func:`command`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .bin._cli import run_main
from .utils import DeepSpeakerError

logger = logging.getLogger("deepspeaker")

PROGRESS_MIN = 20  # items before a progress bar is worth drawing
COMMANDS: dict[str, tuple[str, Callable]] = {}


def command(name: str, help: str):
    """Register ``fn(parser) -> work(args)``: it adds its options and returns its worker."""
    def register(fn):
        COMMANDS[name] = (help, fn)
        return fn
    return register


# --------------------------------------------------------------------------- shared parts


def add_system_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", type=Path, help="a trained system: exp/<tag>")
    p.add_argument("--method", default=None,
                   help="scoring back end: plda | cosine (a fusion: embedding), or one of them "
                        "+ _asnorm; default: plda where the system has one")
    p.add_argument("--asnorm", action="store_true",
                   help="AS-normalise the scores (against the cohort the scoring stage saved, "
                        "exp/<tag>/asnorm/<method>.npz), decided with the normalised scores' "
                        "operating points")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--feature-config", type=Path, default=None,
                   help="stage 1's config (default: the one the recipe saved, see "
                        "deepspeaker.system.features)")


def add_input_args(p: argparse.ArgumentParser, files: bool = True) -> None:
    if files:
        p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audio files")
    p.add_argument("--wav-scp", type=Path, help="a Kaldi wav.scp: utt path | utt command |")
    p.add_argument("--data-dir", type=Path, help="a Kaldi data dir (wav.scp, segments)")


def add_format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format")


def load_system(args):
    from .system import load

    return load(args.exp, method=args.method, device=args.device,
                feature_config=args.feature_config, asnorm=args.asnorm)


def audio_sources(args, system, files=None) -> dict[str, Callable]:
    """``{id: loader}`` of the inputs the user named (files, --wav-scp or --data-dir)."""
    from .system.audio import Audio, read_audio

    files = list(getattr(args, "files", []) if files is None else files)
    given = [bool(files), args.wav_scp is not None, args.data_dir is not None]
    if sum(given) != 1:
        raise DeepSpeakerError("give the audio as files, --wav-scp or --data-dir (one of them)")
    if args.wav_scp is not None:
        from .data import read_kaldi_map

        return {u: (lambda v=v: read_audio(v)) for u, v in read_kaldi_map(args.wav_scp).items()}
    if args.data_dir is not None:
        from .data import DataDir, load_audio

        data, rate = DataDir.load(args.data_dir), system.sample_rate
        return {u: (lambda u=u: Audio(load_audio(data, u, sample_rate=rate), rate, u))
                for u in data.utts}
    sources: dict[str, Callable] = {}
    for f in files:
        key = f.stem if f.suffix else f.name
        if key in sources or not key or any(c.isspace() for c in key):
            raise DeepSpeakerError(f"{f}: its name {key!r} is not a unique Kaldi key (give "
                                   f"the files through --wav-scp to name them)")
        sources[key] = (lambda f=f: read_audio(f))
    return sources


def progress(items, what: str):
    """``items`` with a tqdm bar on stderr when it is a terminal and the list is long."""
    items = list(items)
    if len(items) < PROGRESS_MIN or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="utt", file=sys.stderr)


def embed_all(system, sources: dict[str, Callable], keys=None) -> tuple[dict, dict]:
    """({id: vector}, {id: why not}) of ``keys`` (default: all), each failure logged once.

    Features are made one utterance at a time (a bad one fails alone), vectors a block
    of ``EMBED_BLOCK`` at a time; a block that fails is redone one by one.
    """
    from .system import EMBED_BLOCK

    vectors, failed = {}, {}
    block: list = []

    def fail(key, e) -> None:
        failed[key] = str(e)
        logger.error("%s: %s", key, e)

    def flush() -> None:
        try:
            vectors.update(zip([k for k, _ in block], system.embed_features([i for _, i in block])))
        except DeepSpeakerError:
            for key, item in block:
                try:
                    vectors[key] = system.embed_features([item])[0]
                except DeepSpeakerError as e:
                    fail(key, e)
        block.clear()

    for key in progress(sources if keys is None else keys, "embedding"):
        try:
            audio = sources[key]()
            block.append((key, (*system.features_of(audio), audio.name)))
        except DeepSpeakerError as e:
            fail(key, e)
        if len(block) == EMBED_BLOCK:
            flush()
    flush()
    return vectors, failed


def failures(failed: dict, total: int, what: str = "utterances") -> int:
    if not failed:
        return 0
    logger.error("%d of %d %s failed (each named above)", len(failed), total, what)
    return 1


def vector_text(key: str, v: np.ndarray) -> str:
    """Kaldi's text form of a vector (``copy-vector ark,t``)."""
    return f"{key}  [ {' '.join(f'{x:.7g}' for x in np.asarray(v).reshape(-1))} ]"


def parse_out(args) -> tuple[Path, Path] | None:
    """(ark, scp) of ``--out ark,scp:A,S`` or ``--out-ark A --out-scp S``; None: stdout."""
    if args.out is not None:
        kind, _, names = args.out.partition(":")
        parts = names.split(",")
        if kind != "ark,scp" or len(parts) != 2 or not all(parts):
            raise DeepSpeakerError(f"--out {args.out!r}: expected ark,scp:FILE.ark,FILE.scp")
        return Path(parts[0]), Path(parts[1])
    if (args.out_ark is None) != (args.out_scp is None):
        raise DeepSpeakerError("--out-ark and --out-scp go together")
    return None if args.out_ark is None else (args.out_ark, args.out_scp)


# --------------------------------------------------------------------------- subcommands


@command("embed", "vectors of audio (embeddings, i-vectors) as stage 8 / 4b writes them")
def embed_command(p: argparse.ArgumentParser):
    add_system_args(p)
    add_input_args(p)
    add_format_arg(p)
    p.add_argument("--out", help="Kaldi wspecifier ark,scp:FILE.ark,FILE.scp")
    p.add_argument("--out-ark", type=Path)
    p.add_argument("--out-scp", type=Path)

    def work(args) -> int:
        out = parse_out(args)
        system = load_system(args)
        sources = audio_sources(args, system)
        vectors, failed = embed_all(system, sources)
        if out is not None:
            from .data.ark import write_ark_scp

            if vectors:
                write_ark_scp(out[0], out[1], vectors)
            logger.info("%s: %d vectors of dim %d", out[1], len(vectors), system.embedder.dim)
        elif args.format == "json":
            print(json.dumps({k: v.tolist() for k, v in vectors.items()}))
        else:
            for k, v in vectors.items():
                print(vector_text(k, v))
        return failures(failed, len(sources))
    return work


def read_spk2utt(path: Path) -> dict[str, list[str]]:
    from .data.table import iter_lines

    out: dict[str, list[str]] = {}
    for ln in iter_lines(path):
        fields = ln.fields()
        if not fields:
            continue
        if len(fields) < 2:
            raise DeepSpeakerError(f"expected 'speaker utt1 [utt2 ...]', got {ln.text.rstrip()!r}",
                                   path=path, line=ln.lineno)
        out[fields[0]] = fields[1:]
    return out


@command("enroll", "enroll speakers (k utterances each) into a store of Kaldi ark/scp")
def enroll_command(p: argparse.ArgumentParser):
    add_system_args(p)
    add_input_args(p)
    add_format_arg(p)
    p.add_argument("--store", type=Path, required=True,
                   help="the enrolled speakers: STORE.{ark,scp,num_utts,yaml} (created or added to)")
    p.add_argument("--name", help="the speaker the FILEs are of")
    p.add_argument("--spk2utt", type=Path,
                   help="speaker -> utterances of --wav-scp / --data-dir (data dir default: its spk2utt)")

    def work(args) -> int:
        system = load_system(args)
        system.open_speakers(args.store)
        sources = audio_sources(args, system)
        groups = speaker_groups(args, sources)
        vectors, _ = embed_all(system, sources, sorted({u for us in groups.values() for u in us}))
        enrolled, bad = {}, {}
        for name, utts in groups.items():
            missing = [u for u in utts if u not in vectors]
            if missing:
                bad[name] = missing
                logger.error("%s: not enrolled, %d of its %d utterances failed (%s)", name,
                             len(missing), len(utts), ", ".join(missing))
                continue
            enrolled[name] = system.enroll_vectors(name, np.stack([vectors[u] for u in utts]))
        system.save_speakers()
        for name, model in enrolled.items():
            print(json.dumps({"speaker": name, "utterances": model.count}) if args.format == "json"
                  else f"{name} {model.count}")
        logger.info("%s: %d speakers enrolled now, %d in the store", args.store, len(enrolled),
                    len(system.speakers))
        return failures(bad, len(groups), "speakers")
    return work


def speaker_groups(args, sources: dict[str, Callable]) -> dict[str, list[str]]:
    """{speaker: [ids]}: --name with files, else --spk2utt (or the data dir's spk2utt)."""
    if args.name is not None:
        if args.spk2utt is not None:
            raise DeepSpeakerError("--name and --spk2utt exclude each other")
        return {args.name: list(sources)}
    path = args.spk2utt
    if path is None and args.data_dir is not None:
        path = args.data_dir / "spk2utt"
    if path is None:
        raise DeepSpeakerError("say whose audio it is: --name NAME, or --spk2utt FILE")
    groups = read_spk2utt(path)
    for spk, utts in groups.items():
        unknown = [u for u in utts if u not in sources]
        if unknown:
            raise DeepSpeakerError(f"speaker {spk}: utterance {unknown[0]} is not in the audio "
                                   f"given", path=path)
    return groups


def read_trial_pairs(path: Path) -> list[tuple[str, str]]:
    """The (enroll, test) pairs of a 2-column (Kaldi's) or 3-column trial list."""
    from .data.table import iter_lines

    pairs, seen = [], {}
    for ln in iter_lines(path):
        fields = ln.fields()
        if not fields:
            continue
        if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in ("target", "nontarget")):
            raise DeepSpeakerError(f"expected 'enroll test [target|nontarget]', got "
                                   f"{ln.text.rstrip()!r}", path=path, line=ln.lineno)
        pair = (fields[0], fields[1])
        if pair in seen:
            raise DeepSpeakerError(f"trial '{pair[0]} {pair[1]}' repeats line {seen[pair]}",
                                   path=path, line=ln.lineno)
        seen[pair] = ln.lineno
        pairs.append(pair)
    if not pairs:
        raise DeepSpeakerError("no trials", path=path)
    return pairs


@command("verify", "score and decide a trial (or score a trial list into a Kaldi score file)")
def verify_command(p: argparse.ArgumentParser):
    add_system_args(p)
    p.add_argument("enroll", nargs="?", help="enrollment audio (with --store: a speaker name)")
    p.add_argument("test", nargs="?", type=Path, help="test audio")
    add_input_args(p, files=False)
    add_format_arg(p)
    p.add_argument("--threshold", default="far_1pct",
                   help="eer | far_1pct | far_0.1pct | min_dcf (saved by evaluation) or a score "
                        "(a negative one as --threshold=-2.5)")
    p.add_argument("--store", type=Path, help="enrolled speakers (deepspeaker enroll)")
    p.add_argument("--trials", type=Path, help="batch mode: a trial list 'enroll test'")
    p.add_argument("--scores", type=Path, help="batch mode: the Kaldi score file to write")
    p.add_argument("--enroll2utt", type=Path, help="batch mode: enroll model -> utterances")

    def work(args) -> int:
        system = load_system(args)
        if args.store is not None:
            system.open_speakers(args.store)
        if args.trials is not None:
            return verify_trials(args, system)
        if args.enroll is None or args.test is None or args.scores is not None:
            raise DeepSpeakerError("give ENROLL and TEST, or --trials with --scores")
        if args.store is not None:
            if args.enroll not in system.speakers:
                raise DeepSpeakerError(f"speaker {args.enroll} is not enrolled in {args.store}")
            enroll = system.speakers[args.enroll]
        else:
            enroll = args.enroll
        r = system.verify(enroll, str(args.test), threshold=threshold_arg(args.threshold))
        if args.format == "json":
            print(json.dumps({"enroll": args.enroll, "test": str(args.test), **r.to_dict()}))
        else:
            llr = "-" if r.llr is None else f"{r.llr:.6f}"
            print(f"{args.enroll} {args.test} {r.score:.6f} {llr} "
                  f"{'accept' if r.accept else 'reject'}")
        return 0
    return work


def threshold_arg(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def verify_trials(args, system) -> int:
    """Batch mode: every utterance embedded once, every enroll model built once."""
    from .scoring.trials import Trial, write_scores, write_skipped

    if args.scores is None:
        raise DeepSpeakerError("--trials needs --scores (the score file to write)")
    pairs = read_trial_pairs(args.trials)
    sources = audio_sources(args, system, files=[])
    models = read_spk2utt(args.enroll2utt) if args.enroll2utt else {}
    need = trial_utterances(args, system, pairs, sources, models)
    vectors, failed = embed_all(system, sources, need)
    kept, scores, skipped = [], [], []
    cache: dict[str, object] = {}
    for e, t in pairs:
        utts = [] if e in system.speakers else models.get(e, [e])
        missing = [u for u in utts + [t] if u not in vectors]
        if missing:
            skipped.append((Trial(e, t, False), missing))
            continue
        if e not in cache:
            cache[e] = system.speakers[e] if e in system.speakers else \
                system.model_of(np.stack([vectors[u] for u in utts]), e)
        kept.append(Trial(e, t, False))
        scores.append(float(system.score_vectors(cache[e], vectors[t][None, :])[0]))
    write_scores(args.scores, kept, scores)
    write_skipped(args.scores, skipped, "usable audio")
    logger.info("%s: %d %s scores (%d trials left out)", args.scores, len(kept), system.method,
                len(skipped))
    return failures(failed, len(need))


def trial_utterances(args, system, pairs, sources, models) -> list[str]:
    """The utterances a trial list needs; an id that names nothing is an error naming its line."""
    need: set[str] = set()
    for lineno, (e, t) in enumerate(pairs, 1):
        if e in system.speakers:
            ids = [t]
        else:
            ids = models.get(e, [e]) + [t]
        for u in ids:
            if u not in sources:
                where = "" if e in models or u == t else (f", a speaker of {args.store}"
                                                          if args.store else "")
                raise DeepSpeakerError(f"{u} is not an utterance of the audio given{where}"
                                       f"{' nor a model of ' + str(args.enroll2utt) if args.enroll2utt else ''}",
                                       path=args.trials, line=lineno)
        need.update(ids)
    return sorted(need)


@command("identify", "rank the enrolled speakers for each audio (reject when none passes)")
def identify_command(p: argparse.ArgumentParser):
    add_system_args(p)
    add_input_args(p)
    add_format_arg(p)
    p.add_argument("--store", type=Path, required=True, help="enrolled speakers (deepspeaker enroll)")
    p.add_argument("--top", type=int, default=5, help="speakers listed per audio")
    p.add_argument("--threshold", default="far_1pct",
                   help="eer | far_1pct | far_0.1pct | min_dcf (saved by evaluation) or a score "
                        "(a negative one as --threshold=-2.5)")

    def work(args) -> int:
        system = load_system(args)
        system.open_speakers(args.store)
        if not system.speakers:
            raise DeepSpeakerError(f"{args.store}: no enrolled speakers (deepspeaker enroll)")
        threshold = threshold_arg(args.threshold)
        system.threshold(threshold)  # a missing operating point fails before any work
        sources = audio_sources(args, system)
        vectors, failed = embed_all(system, sources)
        for key, v in vectors.items():
            r = system.identify_vector(v, top=args.top, threshold=threshold)
            if args.format == "json":
                print(json.dumps({"utt": key, **r.to_dict()}))
            else:
                ranked = " ".join(f"{n}:{s:.4f}" for n, s in r.ranked)
                print(f"{key} {r.speaker or '<reject>'} {ranked}")
        return failures(failed, len(sources))
    return work


@command("export", "the network as TorchScript or ONNX, or the LDA + PLDA back end in Kaldi's format")
def export_command(p: argparse.ArgumentParser):
    p.add_argument("exp", type=Path, help="a trained system: exp/<tag>")
    p.add_argument("--format", choices=("onnx", "torchscript", "kaldi"), default="onnx",
                   help="onnx | torchscript (a network, with its feature settings in the "
                        "file) | kaldi (LDA + PLDA as ivector-compute-lda/-plda write them)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (onnx, torchscript; default EXP/export/embedder.*) or "
                        "dir (kaldi; default kaldi/ beside the models)")
    p.add_argument("--checkpoint", default="best.pt", help="onnx, torchscript: checkpoint in EXP")
    p.add_argument("--binary", choices=("true", "false"), default="true",
                   help="kaldi: binary (default) or text files")

    def work(args) -> int:
        if args.format == "kaldi":
            from .bin.export_kaldi_models import export
            print(export(args.exp, args.out, args.binary == "true"))
            return 0
        from .nnet.export import default_export_path, export_model
        out = args.out or default_export_path(args.exp, args.format)
        export_model(args.exp, out, args.format, checkpoint=args.checkpoint)
        print(out)
        return 0
    return work


# --------------------------------------------------------------------------- entry point


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepspeaker", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, fn) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(work=fn(sp))
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options and files in any order (``identify EXP --store S a.wav --top 3``).

    argparse cannot intermix the positionals of a subcommand, so the command's own
    parser reads everything after the command name.
    """
    parser = get_parser()
    if not argv or argv[0] not in COMMANDS:
        return parser.parse_args(argv)  # --help, or the error naming the commands
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_main(lambda: args.work(args), argv, echo=False)


if __name__ == "__main__":
    sys.exit(main())
