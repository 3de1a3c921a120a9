"""`caption`, `ask`, `match` and `models`: the inference commands."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mmstudio.cli.batch import BatchOutput, Ranks
from mmstudio.cli.options import (
    config_from_args,
    load_flags,
    non_empty,
    non_empty_path,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    seed,
)
from mmstudio.engine import Engine
from mmstudio.errors import MMStudioError
from mmstudio.imaging import iter_image_files, load_image
from mmstudio.models import hub
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.catalog import available_models
from mmstudio.models.generation import DEFAULT_MAX_NEW_TOKENS, GenerationOptions
from mmstudio.models.in_domain import out_of_world
from mmstudio.models.words import not_understood, unfamiliar
from mmstudio.results_file import ResultsFile
from mmstudio.training.data import RowProblem, clean_text, read_rows


def register(commands) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", type=non_empty,
                        help="model folder, hub id, or builtin:NAME (default: the built-in model)")
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    common.add_argument("--attention", action="store_true", help="include the attention maps")
    load_flags(common)

    p = commands.add_parser("caption", parents=[common, _generation_flags(prompt=True)],
                            help="caption images (files or folders)")
    p.add_argument("paths", nargs="+", metavar="PATH", type=non_empty)  # "": the current folder, walked whole
    p.add_argument("--batch-size", type=positive_int, default=16)
    out_flags(p)
    p.set_defaults(run=run_caption)

    p = commands.add_parser("ask", parents=[common, _generation_flags(prompt=False)],
                            help="answer questions about an image")
    p.add_argument("image", nargs="?", metavar="IMAGE", type=non_empty)
    p.add_argument("questions", nargs="*", metavar="QUESTION")
    p.add_argument("--input", type=non_empty_path, help='JSONL file, one {"image": ..., "question": ...} per line')
    out_flags(p)
    p.set_defaults(run=run_ask)

    p = commands.add_parser("match", parents=[common], help="score texts against an image (ITM and ITC)")
    p.add_argument("image", nargs="?", metavar="IMAGE", type=non_empty)
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", type=non_empty_path, help='JSONL file, one {"image": ..., "texts": [...]} per line')
    p.add_argument("--labels", help='zero-shot labels: "a,b,c" prints the probability of each label for IMAGE')
    p.add_argument("--template", default="{}",
                   help='how a label becomes a text, e.g. "a photo of {}" (default: the label as is)')
    out_flags(p)
    p.set_defaults(run=run_match)

    p = commands.add_parser(
        "models", help="list, download and remove models (ls, known, download ID, rm ID)",
        description="ls (the default): the built-in models and those in the Hugging Face cache, with disk use. "
                    "known: checkpoints mmstudio knows by name, with size, licence and whether they are cached. "
                    "download ID: fetch a hub model's configs, tokenizer and safetensors weights into the cache "
                    "(resumes an interrupted download; HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and proxy variables "
                    "apply). rm ID: delete a model from the cache. Offline, copy a models--OWNER--NAME folder "
                    "from another machine's cache into this one's.")
    p.add_argument("action", nargs="?", default="ls", choices=("ls", "known", "download", "rm"))
    p.add_argument("id", nargs="?", metavar="ID", help="a hub model id, e.g. Salesforce/blip-image-captioning-base")
    p.add_argument("--revision", help="download: a branch, tag or commit (default: main)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_models)


def out_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=non_empty_path, metavar="FILE.jsonl",
                   help="write the results (JSON lines, as with --json) to FILE as they come, synced to disk "
                        "as each batch or input is done; stdout then shows only progress. Needed under torchrun "
                        "(each process takes its share of the inputs; the results are merged in input order)")
    p.add_argument("--resume", action="store_true",
                   help="with --out: keep the results already in FILE and do only the inputs missing from it "
                        "(after a crash or kill, every input ends up there exactly once)")


def _generation_flags(prompt: bool) -> argparse.ArgumentParser:
    """Generation settings; a flag not given leaves the checkpoint's own generation_config setting."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("generation (default: the checkpoint's generation_config, else "
                                      f"greedy and at most {DEFAULT_MAX_NEW_TOKENS} new tokens)")
    flag = functools.partial(group.add_argument, default=argparse.SUPPRESS)
    flag("--max-new-tokens", type=positive_int, help="at most this many generated tokens")
    flag("--min-new-tokens", type=non_negative_int, help="at least this many generated tokens")
    flag("--num-beams", type=positive_int, help="beam search with this many beams (1: greedy or sampling)")
    flag("--repetition-penalty", type=positive_float, help="above 1 makes repeated tokens less likely")
    flag("--no-repeat-ngram-size", type=non_negative_int, help="never repeat an n-gram of this size")
    flag("--sample", dest="do_sample", action=argparse.BooleanOptionalAction,
         help="sample tokens instead of taking the most likely (--no-sample: greedy even where the checkpoint "
              "samples)")
    flag("--temperature", type=positive_float, help="sampling: below 1 sharper, above 1 more varied")
    flag("--top-p", type=probability, help="sampling: from the smallest set of tokens with this much probability")
    flag("--top-k", type=non_negative_int, help="sampling: from the k most likely tokens (0: all)")
    flag("--seed", type=seed, help="sampling: the same seed gives the same text")
    if prompt:
        flag("--prompt", type=non_empty,
             help='the text each caption starts with, e.g. "a picture of" (BLIP\'s conditional captioning)')
    return parser


def _generation(args) -> GenerationOptions:
    """The generation flags given (each flag's dest is its field, set only when given), checked."""
    return config_from_args(GenerationOptions, args, required=())


# ------------------------------------------------------------------ output


class Printer:
    """Writes results as JSON lines or readable text, and remembers whether any input failed.

    On a terminal (text output, stdout and stderr both a terminal) it keeps a progress line at the
    bottom: how many, how fast, how long still. Piped output and --json get nothing extra.
    """

    def __init__(self, as_json: bool, out: ResultsFile | None = None, unit: str = "images"):
        self.as_json = as_json
        self.unit = unit  # what progress counts
        self.out = out  # --out: records go there (as JSON), stdout keeps only the progress
        self.failed = False
        self.on_terminal = (out is not None or not as_json) and sys.stdout.isatty() and sys.stderr.isatty()
        self._progress = ""
        self._started = time.monotonic()

    def progress(self, done: int, total: int) -> None:
        if self.out is not None:
            self.out.sync()  # after each batch: a kill loses at most the batch being made
        if not self.on_terminal or total <= 1:
            return
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", about {round((total - done) / rate)} s left" if rate and done < total else ""
        self._progress = f"{done}/{total} {self.unit} ({done / total:.0%}), {rate:.1f}/s{left}"
        sys.stderr.write("\r\x1b[K" + self._progress)
        sys.stderr.flush()

    def _clear_progress(self) -> None:
        if self._progress:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def _redraw_progress(self) -> None:
        if self._progress:
            sys.stderr.write(self._progress)
            sys.stderr.flush()

    def finish(self) -> None:
        """Leave the terminal as it was: no progress line after the last result."""
        self._clear_progress()
        self._progress = ""
        if self.out is not None:
            self.out.close()

    def record(self, record: dict, text: str) -> None:
        if self.out is not None:
            self.out.write(record)
            return
        self._clear_progress()
        print(json.dumps(record, ensure_ascii=False) if self.as_json else text, flush=True)
        self._redraw_progress()

    def heading(self, text: str) -> None:
        """A line of the readable output that is no record (an image's name above its scores)."""
        if self.as_json or self.out is not None:
            return
        self._clear_progress()
        print(text, flush=True)
        self._redraw_progress()

    def warn(self, image: str, in_domain: float | None) -> None:
        """One line on stderr for an image out of the model's world; --json output carries in_domain instead."""
        if self.as_json or not out_of_world(in_domain):
            return
        self._clear_progress()
        print(f"{image}: warning: {OUT_OF_WORLD.format(in_domain)}", file=sys.stderr, flush=True)
        self._redraw_progress()

    def error(self, image: str, message: str, **extra) -> None:
        self.failed = True
        if self.out is not None:
            self.out.write({"image": image, **extra, "error": message})
        self._clear_progress()
        if self.as_json and self.out is None:
            print(json.dumps({"image": image, **extra, "error": message}, ensure_ascii=False), flush=True)
        else:
            print(f"{image}: error: {message}", file=sys.stderr, flush=True)
        self._redraw_progress()


OUT_OF_WORLD = ("not a Shapes World scene (in_domain {:.1g}): the built-in models know only coloured shapes on a "
                "light background, so this answer means little; for other pictures give --model a BLIP, ViT-GPT2, "
                "ViLT, CLIP or SigLIP checkpoint")


def in_domain_json(value: float | None) -> float | None:
    """in_domain for JSON, to three significant digits: far out of the world it is 1e-30, not 0."""
    return None if value is None else float(f"{value:.3g}")


def _flat(maps: np.ndarray) -> list:
    return [[round(float(v), 6) for v in m.ravel()] for m in maps]


def engine_for(args, ranks: Ranks | None = None) -> Engine:
    """The engine a command's load flags (options.load_flags) ask for."""
    device = ranks.device(args.device) if ranks else args.device  # under torchrun: each process its own GPU
    return Engine(LoadOptions.chosen(device, args.dtype, args.allow_pickle, args.allow_missing_weights,
                                     args.threads))


# ----------------------------------------------------------------- caption


def run_caption(args) -> int:
    generation = _generation(args)
    output = BatchOutput(args.out, resume=args.resume)
    engine = engine_for(args, output.ranks)
    adapter = engine.adapter(_task("caption"), args.model)  # a broken model fails once, before any image is read
    settings = adapter.generation_used(generation)
    inputs = iter_image_files(args.paths)
    files = output.todo(inputs)
    printer = Printer(args.json, output.file)
    printer.failed = output.failed_before  # the exit code speaks for the whole file
    if output.done:
        print(f"{args.out}: {len(output.done)} results kept, {len(files)} images to go", file=sys.stderr)
    # Lines come out as each batch finishes, in the order the files were given, failures in their place.
    for item in engine.caption_each(files, load=load_image, model=args.model,
                                    attention=args.attention, batch_size=args.batch_size,
                                    progress=printer.progress, generation=generation):
        name, result = str(item.image), item.result
        if result is None:
            printer.error(name, item.error)
            continue
        record = {"image": name, "caption": result.caption, "tokens": list(result.tokens), "generation": settings}
        record["in_domain"] = in_domain_json(result.in_domain)
        if args.attention and result.attention is not None:
            record["grid"] = list(result.attention.grid)
            record["attention"] = _flat(result.attention.maps())
        printer.record(record, f"{name}: {result.caption}")
        printer.warn(name, result.in_domain)
    printer.finish()
    return 1 if output.finish([str(f) for f in inputs], printer.failed) else 0


# --------------------------------------------------------------- ask/match


@dataclass
class Request:
    image: str
    items: list[str] = field(default_factory=list)
    line: int | None = None  # of the --input file: what names this input in the results
    error: str | None = None

    def where(self) -> dict:
        """The fields that name this input in its records: its --input line, where it has one."""
        return {} if self.line is None else {"line": self.line}


def _requests(args, key: str, positional: list[str]) -> Iterator[Request]:
    if args.input is not None:
        if args.image:
            raise MMStudioError("give either --input FILE.jsonl or IMAGE and texts, not both")
        yield from _read_jsonl(args.input, key)
        return
    if not args.image or not positional:
        raise MMStudioError(f"give an IMAGE and at least one {'question' if key == 'question' else 'text'}, "
                            "or --input FILE.jsonl")
    what = "question" if key == "question" else "text"
    for number, item in enumerate(positional, 1):
        # As in an --input file: a blank one (an empty shell variable) is a mistake, not a text to score.
        if not item.strip():
            raise MMStudioError(f"{what} {number} of {len(positional)} is blank: give it in words"
                                if len(positional) > 1 else f"the {what} is blank: give it in words")
        try:
            clean_text(item, what)
        except RowProblem as exc:
            raise MMStudioError(str(exc)) from None
    yield Request(image=args.image, items=list(positional))


def _read_jsonl(path: Path, key: str) -> Iterator[Request]:
    """Requests of a JSONL file; relative image paths are relative to the file's folder.

    Read by the datasets' row reader, so the same caps hold: a line over 1 MiB or a file over 256 MiB
    (/dev/zero, a video given by mistake) ends the reading with an error on that line, not a MemoryError.
    """
    wanted = '{"image": ..., "texts": [...]}' if key == "texts" else '{"image": ..., "question": ...}'
    for number, row in read_rows(path):
        where = f"{path}:{number}"
        if isinstance(row, str):
            yield Request(image=where, line=number, error=f"{where}: {row}")
            continue
        image = row.get("image")
        if key == "texts":
            items = row.get("texts", [row["text"]] if "text" in row else None)
        else:
            items = [row.get("question")]
        if not isinstance(image, str) or not image.strip() or any(ord(c) < 32 for c in image) or \
                not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
            shown = image[:200] if isinstance(image, str) and image.isprintable() and image.strip() else where
            yield Request(image=shown, line=number, error=f"{where}: expected {wanted}")
            continue
        try:
            for item in items:
                clean_text(item, "text" if key == "texts" else "question")
        except RowProblem as exc:
            yield Request(image=image[:200], line=number, error=f"{where}: {exc}")
            continue
        image_path = Path(image)
        if not image_path.is_absolute():
            image_path = path.parent / image_path
        yield Request(image=str(image_path), items=items, line=number)


def _serve(args, task: str, key: str, positional: list[str], answer) -> int:
    """The loop `ask` and `match` share: each request's image loaded once, failures reported per input."""
    requests = list(_requests(args, key, positional))
    output = BatchOutput(args.out, resume=args.resume, key="image" if args.input is None else "line", grouped=True)
    engine = engine_for(args, output.ranks)
    engine.adapter(_task(task), args.model)  # a broken model fails once, before any input is read
    return _serve_requests(args, output, engine, requests, answer)


def _serve_requests(args, output: BatchOutput, engine: Engine, requests: list[Request], answer) -> int:
    def name(request: Request):
        return request.image if request.line is None else request.line

    todo = output.todo(requests, key_of=name)
    printer = Printer(args.json, output.file, unit="inputs")
    printer.failed = output.failed_before
    if output.done:
        print(f"{args.out}: {len(output.done)} inputs kept, {len(todo)} to go", file=sys.stderr)
    for done, request in enumerate(todo, start=1):
        if request.error:
            printer.error(request.image, request.error, **request.where())
            continue
        try:
            image = load_image(request.image)
        except MMStudioError as exc:
            printer.error(request.image, str(exc), **request.where())
            continue
        answer(engine, image, request, printer)
        printer.progress(done, len(todo))
    printer.finish()
    return 1 if output.finish([name(r) for r in requests], printer.failed) else 0


def run_ask(args) -> int:
    generation = _generation(args)

    @functools.cache
    def settings(engine) -> dict:  # one model, one set of settings: worked out once, not per image
        return engine.adapter(Task.VQA, args.model).generation_used(generation)

    def answer(engine, image, request, printer) -> None:
        results = engine.ask(image, request.items, model=args.model, attention=args.attention, generation=generation)
        for result in results:
            record = {"image": request.image, **request.where(), "question": result.question, "answer": result.answer,
                      "generation": settings(engine)}  # {}: a model that picks its answer from a list (ViLT)
            record["unknown_words"] = list(result.unknown_words)  # with any, "answer" is "": nothing was guessed
            record["familiar_question"] = result.familiar  # false: not a form the model learned, maybe a guess
            record["in_domain"] = in_domain_json(result.in_domain)
            if args.attention and result.question_attention is not None:
                record["grid"] = list(result.question_attention.grid)
                record["tokens"] = list(result.question_tokens)
                record["attention"] = _flat(result.question_attention.maps())
                record["answer_attention"] = _flat(result.answer_attention.maps())[0]
            if args.attention and result.answer_token_attention is not None:  # a chat model: each answer word's
                record["grid"] = list(result.answer_token_attention.grid)
                record["answer_tokens"] = list(result.answer_tokens)
                record["answer_token_attention"] = _flat(result.answer_token_attention.maps())
                record["answer_attention"] = _flat(result.answer_attention.maps())[0]
            reply = f"A: {result.answer}" if result.understood else \
                not_understood(result.unknown_words, engine.known_words(Task.VQA, model=args.model))
            if result.familiar is False:
                reply += f"\n  ({unfamiliar(engine.known_words(Task.VQA, model=args.model))})"
            printer.record(record, f"{request.image}\n  Q: {result.question}\n  {reply}")
        printer.warn(request.image, results[0].in_domain if results else None)  # once an image: one vision pass

    return _serve(args, "vqa", "question", args.questions, answer)


def run_match(args) -> int:
    if args.labels is not None:
        return run_labels(args)

    def answer(engine, image, request, printer) -> None:
        printer.heading(request.image)
        results = engine.match(image, request.items, model=args.model, attention=args.attention)
        for result in results:
            record = {"image": request.image, **request.where(), "text": result.text, "itm": round(result.itm, 6),
                      "itc": round(result.itc, 6)}
            record["unknown_words"] = list(result.unknown_words)  # scored as if they were not there
            record["in_domain"] = in_domain_json(result.in_domain)
            if args.attention and result.attention is not None:
                record["grid"] = list(result.attention.grid)
                record["attention"] = _flat(result.attention.maps())[0]
            printer.record(record, f"  itm {result.itm:6.1%}  itc {result.itc:+.3f}  {result.text}{_note(result)}")
        _what_it_knows(engine, args, results, printer)
        printer.warn(request.image, results[0].in_domain if results else None)

    return _serve(args, "itm", "texts", args.texts, answer)


def _note(result) -> str:
    return f"  ({not_understood(result.unknown_words, None)})" if result.unknown_words else ""


def _what_it_knows(engine, args, results, printer) -> None:
    """After an image's scores: what the model knows, where a text had words it does not (once, not per text)."""
    known = engine.known_words(Task.ITM, model=args.model)
    if known is not None and any(result.unknown_words for result in results):
        printer.heading(f"  (the model knows {known.text()})")


def run_labels(args) -> int:
    """`match --labels "a,b,c" IMAGE`: each label's probability (zero-shot): a softmax over the labels, or for
    SigLIP each label's own sigmoid."""
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    engine = engine_for(args, Ranks.from_environment())
    alone = getattr(engine.adapter(_task("itm"), args.model), "labels_alone", False)
    if len(labels) < (1 if alone else 2) or len(set(labels)) != len(labels):
        raise MMStudioError(f'give at least {"one label" if alone else "two different labels"}, '
                            'e.g. --labels "cat,dog,bird"')
    if "{}" not in args.template:
        raise MMStudioError(f'--template must contain "{{}}" where the label goes, not {args.template!r}')
    images = ([args.image] if args.image else []) + list(args.texts)
    if args.input is not None or not images:
        raise MMStudioError("give --labels with one or more IMAGE files (not --input)")
    texts = [args.template.replace("{}", label) for label in labels]
    output = BatchOutput(args.out, resume=args.resume, grouped=True)

    def answer(engine, image, request, printer) -> None:
        results = engine.match(image, texts, model=args.model)
        ranked = sorted(zip(labels, results), key=lambda pair: -pair[1].label_probability)
        printer.heading(request.image)
        for label, result in ranked:
            record = {"image": request.image, "label": label, "probability": round(result.label_probability, 6)}
            record["unknown_words"] = list(result.unknown_words)
            record["in_domain"] = in_domain_json(result.in_domain)
            printer.record(record, f"  {result.label_probability:6.1%}  {label}{_note(result)}")
        _what_it_knows(engine, args, results, printer)
        printer.warn(request.image, results[0].in_domain)

    return _serve_requests(args, output, engine, [Request(image=name) for name in images], answer)


# ------------------------------------------------------------------ models


def run_models(args) -> int:
    if args.action in ("download", "rm"):
        if not args.id:
            raise MMStudioError(f"give the model to {args.action}, e.g. mmstudio models {args.action} "
                                "Salesforce/blip-image-captioning-base")
        return models_download(args) if args.action == "download" else models_rm(args)
    if args.id:
        raise MMStudioError(f"models {args.action} takes no model id")
    return models_known(args) if args.action == "known" else models_ls(args)


def models_ls(args) -> int:
    entries = available_models()
    sizes = {c.id: c.size for c in hub.cached()}
    if args.json:
        for entry in entries:
            record = entry.as_dict()
            if entry.source == "hf-cache":
                record["size"] = sizes.get(entry.name)
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not entries:
        print("no models found (the built-in models are missing: reinstall mmstudio)")
    for entry in entries:
        tasks = "broken" if entry.problem else ", ".join(sorted(t.value for t in entry.tasks)) or "-"
        size = f"{sizes[entry.name] / 1e6:8.1f} MB" if entry.name in sizes else " " * 11
        print(f"{entry.name:<40} {entry.source:<9} {tasks:<10} {size} {entry.path}")
        if entry.problem:
            print(f"{'':<40}   {entry.problem}")
    if sizes:
        print(f"cache: {hub.hub_cache()}, {sum(sizes.values()) / 1e6:.1f} MB")
    return 0


def models_known(args) -> int:
    cached = {c.id for c in hub.cached()}
    for model in hub.known_models():
        if args.json:
            print(json.dumps({**dataclasses.asdict(model), "cached": model.id in cached}, ensure_ascii=False))
        else:
            mark = "cached" if model.id in cached else f"{model.size_mb:>5} MB"
            print(f"{model.id:<42} {','.join(model.tasks):<8} {mark:>9}  {model.licence:<13} {model.does}")
    return 0


def models_download(args) -> int:
    live = sys.stderr.isatty()
    last = [0.0]

    def progress(event: hub.DownloadProgress) -> None:
        now = time.monotonic()
        if live and (now - last[0] > 0.2 or event.done == event.total):
            last[0] = now
            print(f"\r\033[K{args.id}: {event.text()}", end="", file=sys.stderr, flush=True)

    try:
        folder = hub.download(args.id, revision=args.revision, progress=progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume {args.id}", file=sys.stderr)
        return 130
    finally:
        if live:
            print(file=sys.stderr)
    print(f"downloaded {args.id} to {folder}")
    return 0


def models_rm(args) -> int:
    freed = hub.remove(args.id)
    print(f"removed {args.id} from {hub.hub_cache()} ({freed / 1e6:.1f} MB freed)")
    return 0


def _task(name: str):
    return Task(name)
