"""The one dataset reader (mmstudio.training.data): training, evaluation, "Check data", teaching and the
CLI's --input files read rows the same way, and hostile rows are `file:line` problems before any training."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from mmstudio.cli import main
from mmstudio.errors import DatasetError
from mmstudio.models.base import Task
from mmstudio.training import data as reader
from mmstudio.training.data import PixelStore, read_dataset
from mmstudio.training.evaluate import evaluate_adapter, scene_rows
from mmstudio.training.run import TrainConfig, prepare, train
from mmstudio.world import generate_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("world") / "data", 8, seed=11, size=96)


def rows_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().split("\n") if line]


def copy_with(tmp_path, world, name: str, rows: list[dict] | None = None, text: str | None = None):
    """A copy of the world's images with other metadata: rows as JSONL, or the raw text of the file."""
    folder = tmp_path / name
    shutil.copytree(world / "images", folder / "images")
    raw = text if text is not None else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (folder / "metadata.jsonl").write_text(raw, encoding="utf-8")
    return folder


def write_csv(folder, header: list[str], lines: list[list[str]], bom: bool = False):
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)


def config(task: Task, data, out, **kw) -> TrainConfig:
    defaults = dict(base="scratch", size="tiny", steps=2, batch_size=4, save_every=2, log_every=1,
                    learning_rate=1e-3, bf16=False, threads=1, eval_samples=8)
    defaults.update(kw)
    return TrainConfig(task=task, data=data, out=out, **defaults)


def problems_of(call) -> list[str]:
    with pytest.raises(DatasetError) as info:
        call()
    return info.value.problems or [str(info.value)]


def cli(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, [json.loads(x) for x in out.out.split("\n") if x.startswith("{")], out.out + out.err


# ------------------------------------------------------- evaluation reads what training reads


def test_csv_eval_set_with_text_column_trains_to_the_end_and_publishes(tmp_path, world):
    evalset = tmp_path / "eval"
    shutil.copytree(world / "images", evalset / "images")
    write_csv(evalset, ["file_name", "text"], [[r["file_name"], r["caption"]] for r in rows_of(world)], bom=True)
    events = []
    out = train(config(Task.CAPTION, world, tmp_path / "run", eval_data=evalset), events.append)
    assert events[-1]["event"] == "done" and events[-1]["finished"]
    assert {"eval_loss", "exact_match", "bleu4"} <= set(events[-1]["metrics"])
    assert (out / "config.json").is_file()


def test_flat_question_answer_rows_are_one_pair_for_training_and_evaluation(tmp_path, world, tiny_models):
    flat = [{"file_name": r["file_name"], "question": q["question"], "answer": q["answer"]}
            for r in rows_of(world) for q in r["questions"][:1]]
    folder = copy_with(tmp_path, world, "flat", flat)
    assert len(read_dataset(folder, Task.VQA).examples) == len(flat)
    rows = scene_rows(folder, Task.VQA)
    assert [len(r["questions"]) for r in rows] == [1] * len(flat)
    from mmstudio.engine import Engine

    report = evaluate_adapter(Engine().adapter(Task.VQA, str(tiny_models[Task.VQA])), folder, attention=False)
    assert set(report.per_kind) == {"all"}  # each row's pair was asked, not skipped for want of "questions"


@pytest.mark.parametrize("file_name, why", [(None, "no file_name"), ("/etc/hostname", "outside"),
                                            ("../images/000000.png", "outside"), ("images/a\u0000.png", "control")])
def test_eval_rows_without_a_usable_file_name_fail_before_training(tmp_path, world, file_name, why, capsys,
                                                                   tiny_models):
    rows = rows_of(world)
    if file_name is None:
        rows[2].pop("file_name")
    else:
        rows[2]["file_name"] = file_name
    evalset = copy_with(tmp_path, world, "eval", rows)
    out = tmp_path / "run"
    problems = problems_of(lambda: prepare(config(Task.CAPTION, world, out, eval_data=evalset)))
    assert any(f"{evalset}/metadata.jsonl:3: " in p and why in p for p in problems), problems
    code, _, text = cli(capsys, "eval", "--task", "caption", "--model", str(tiny_models[Task.CAPTION]),
                        "--data", str(evalset), "--no-attention")
    assert code == 2 and "metadata.jsonl:3: " in text and "Traceback" not in text


# ------------------------------------------------------------------------ hostile rows


def _nested(row):
    return json.dumps(row)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"


JSONL_CASES = {  # name: (how row 3 of the file is written, the words of its problem)
    "width Infinity": (lambda r: json.dumps(r).replace('"width": 96', '"width": Infinity'), "Infinity"),
    "5000-digit number": (lambda r: json.dumps(r).replace('"width": 96', '"width": ' + "9" * 5000), "5,000 digits"),
    "huge float": (lambda r: json.dumps(r).replace('"width": 96', '"width": 1e999'), "too large"),
    "NUL in file_name": (lambda r: json.dumps({**r, "file_name": r["file_name"] + "\u0000x"}), "control character"),
    "caption over the cap": (lambda r: json.dumps({**r, "caption": "red " * 3000}), "12,000 characters"),
    "half-MiB caption": (lambda r: json.dumps({**r, "caption": "x" * (reader.MAX_LINE_BYTES // 2)}),
                          "characters"),
    "not UTF-8": (lambda r: json.dumps(r)[:-1] + ', "x": "\udcff"}', "not UTF-8"),
    "deep nesting": (_nested, "not valid JSON"),
    "not an object": (lambda r: "[1, 2]", "JSON object"),
}


@pytest.mark.parametrize("case", sorted(JSONL_CASES))
def test_hostile_jsonl_row_is_a_file_line_problem_before_training(tmp_path, world, case):
    write, words = JSONL_CASES[case]
    rows = rows_of(world)
    lines = [json.dumps(r) for r in rows]
    lines[2] = write(rows[2])
    folder = tmp_path / "data"
    shutil.copytree(world / "images", folder / "images")
    (folder / "metadata.jsonl").write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    for task in (Task.CAPTION, Task.VQA):
        problems = problems_of(lambda task=task: prepare(config(task, folder, tmp_path / "run")))
        assert len(problems) == 1 and f"{folder}/metadata.jsonl:3: " in problems[0] and words in problems[0], \
            problems
    # The same file as an evaluation set fails the same way, before training.
    problems = problems_of(lambda: prepare(config(Task.CAPTION, world, tmp_path / "run", eval_data=folder)))
    assert f"{folder}/metadata.jsonl:3: " in problems[0]


@pytest.mark.parametrize("key, value", [("question", "what color " * 300), ("answer", "red " * 600)])
def test_question_or_answer_over_the_cap_is_a_problem(tmp_path, world, key, value):
    rows = rows_of(world)
    rows[4]["questions"][0][key] = value
    folder = copy_with(tmp_path, world, "long", rows)
    problems = problems_of(lambda: read_dataset(folder, Task.VQA))
    assert len(problems) == 1 and "metadata.jsonl:5: " in problems[0] and key in problems[0]


def test_negative_over_the_cap_is_a_problem(tmp_path, world):
    rows = rows_of(world)
    rows[1]["negatives"] = ["a blue star " * 200]
    folder = copy_with(tmp_path, world, "neg", rows)
    problems = problems_of(lambda: read_dataset(folder, Task.ITM))
    assert len(problems) == 1 and "metadata.jsonl:2: negative 1 is 2,400 characters" in problems[0]


def test_line_separator_inside_a_string_stays_in_its_row(tmp_path, world):
    rows = rows_of(world)
    rows[0]["caption"] = rows[0]["caption"] + "\u2028and\u2029more\u0085text"
    folder = copy_with(tmp_path, world, "u2028", rows)
    raw = (folder / "metadata.jsonl").read_text(encoding="utf-8")
    assert "\u2028" in raw  # written raw (ensure_ascii=False), as teaching writes rows
    dataset = read_dataset(folder, Task.CAPTION)
    assert dataset.rows == len(rows)
    assert dataset.examples[0].text.endswith(" and more text")


def test_over_long_line_and_over_large_file_end_the_reading(tmp_path, world):
    rows = rows_of(world)
    lines = [json.dumps(r) for r in rows]
    lines[3] = "x" * (reader.MAX_LINE_BYTES + 10)
    folder = copy_with(tmp_path, world, "longline", text="\n".join(lines) + "\n")
    problems = problems_of(lambda: read_dataset(folder, Task.CAPTION))
    assert len(problems) == 1 and "metadata.jsonl:4: line longer than 1 MiB" in problems[0]
    big = copy_with(tmp_path, world, "big", rows)
    with open(big / "metadata.jsonl", "r+b") as handle:  # sparse: the size is refused before any read
        handle.truncate(reader.MAX_FILE_BYTES + 1)
    with pytest.raises(DatasetError, match="over the 256 MiB"):
        read_dataset(big, Task.CAPTION)


def test_both_metadata_files_is_an_error(tmp_path, world):
    folder = copy_with(tmp_path, world, "both", rows_of(world))
    write_csv(folder, ["file_name", "caption"], [["images/000000.png", "a red circle"]])
    with pytest.raises(DatasetError, match="both metadata.jsonl and metadata.csv"):
        read_dataset(folder, Task.CAPTION)


# ----------------------------------------------------------------------------- CSV


def csv_folder(tmp_path, world, name: str, raw: bytes):
    folder = tmp_path / name
    shutil.copytree(world / "images", folder / "images")
    (folder / "metadata.csv").write_bytes(raw)
    return folder


def csv_lines(world) -> tuple[list[dict], list[str]]:
    """The world's rows, and one `file_name,"caption"` CSV line for each (a test then spoils some)."""
    rows = rows_of(world)
    return rows, [f'{r["file_name"]},"{r["caption"]}"' for r in rows]


def csv_of(tmp_path, world, name: str, lines: list[str]):
    return csv_folder(tmp_path, world, name, ("file_name,caption\n" + "\n".join(lines) + "\n").encode())


def test_csv_with_a_bom_reads_every_row(tmp_path, world):
    lines = "".join(f'{r["file_name"]},"{r["caption"]}"\r\n' for r in rows_of(world))
    folder = csv_folder(tmp_path, world, "bom", b"\xef\xbb\xbf" + ("file_name,caption\r\n" + lines).encode())
    dataset = read_dataset(folder, Task.CAPTION)
    assert dataset.rows == 8 and dataset.examples[0].text == rows_of(world)[0]["caption"]


def test_csv_unterminated_quote_is_reported_at_its_line(tmp_path, world):
    rows, lines = csv_lines(world)
    lines[3] = f'{rows[3]["file_name"]},"{rows[3]["caption"]}'  # line 5 of the file: never closed
    folder = csv_of(tmp_path, world, "quote", lines)
    problems = problems_of(lambda: read_dataset(folder, Task.CAPTION))
    assert problems == [f"{folder}/metadata.csv:5: a quote opened on this line is never closed"]


def test_csv_quote_closed_lines_later_is_reported_not_swallowed(tmp_path, world):
    rows, lines = csv_lines(world)
    lines[3] = f'{rows[3]["file_name"]},"{rows[3]["caption"]}'  # closed by the stray quote that ends line 6
    lines[4] = f'{rows[4]["file_name"]},{rows[4]["caption"]}"'
    folder = csv_of(tmp_path, world, "quote2", lines)
    problems = problems_of(lambda: read_dataset(folder, Task.CAPTION))
    assert len(problems) == 1 and "metadata.csv:5: a quoted field runs on to line 6" in problems[0]


def test_csv_field_over_the_csv_limit_names_its_line(tmp_path, world):
    rows, lines = csv_lines(world)
    lines[2] = f'{rows[2]["file_name"]},"{"x" * 200_000}"'
    folder = csv_of(tmp_path, world, "field", lines)
    problems = problems_of(lambda: read_dataset(folder, Task.CAPTION))
    assert len(problems) == 1 and "metadata.csv:4: not valid CSV (a field longer than 131,072" in problems[0]


def test_csv_row_with_the_wrong_number_of_fields(tmp_path, world):
    rows, lines = csv_lines(world)
    lines[0] += ",extra"
    folder = csv_of(tmp_path, world, "fields", lines)
    assert problems_of(lambda: read_dataset(folder, Task.CAPTION)) == [
        f"{folder}/metadata.csv:2: 3 fields where the header has 2"]


# ---------------------------------------------------------------------- data-driven memory


def test_vocabulary_growth_over_the_cap_is_refused_by_prepare(tmp_path, world, tiny_models):
    rows = [dict(r) for r in rows_of(world) * 3]  # 24 rows: each caption stays under the text cap
    words = [f"w{i}" for i in range(reader.MAX_NEW_WORDS + 1)]
    per_row = -(-len(words) // len(rows))
    for i, row in enumerate(rows):
        row["caption"] = " ".join(words[i * per_row:(i + 1) * per_row])
    folder = copy_with(tmp_path, world, "prose", rows)
    for base in ("scratch", str(tiny_models[Task.CAPTION])):
        with pytest.raises(DatasetError) as info:
            prepare(config(Task.CAPTION, folder, tmp_path / "run", base=base))
        assert f"{len(words):,} words the model does not know" in str(info.value)
        assert info.value.problems[0] == f"{folder}/metadata.jsonl:1: new word 'w0'"


def test_rows_of_one_image_store_it_once(tmp_path, world, tiny_models):
    row = rows_of(world)[0]
    folder = copy_with(tmp_path, world, "one", [row] * 2000)
    dataset = read_dataset(folder, Task.VQA)
    assert dataset.rows == 2000 and len(dataset.images) == 1
    assert len(dataset.examples) == 2000 * len(row["questions"])
    from mmstudio.models.blip import load_image_processor

    pixels = PixelStore(dataset, load_image_processor(tiny_models[Task.VQA]))
    assert pixels.pixels.shape[0] == 1
    events = []
    train(config(Task.VQA, folder, tmp_path / "run"), events.append)  # every row trains from the one image
    assert events[-1]["finished"]


# ------------------------------------------------------------------------------ --input


def test_ask_input_from_dev_zero_is_a_clear_error(capsys, tiny_models):
    code, lines, text = cli(capsys, "ask", "--model", str(tiny_models[Task.VQA]), "--json", "--input", "/dev/zero")
    assert code == 1 and len(lines) == 1
    assert lines[0]["error"] == ("/dev/zero:1: line longer than 1 MiB (is zero a file of rows?); "
                                 "nothing after it was read")


def test_input_file_hostile_lines(capsys, tiny_models, tmp_path, scene_images):
    scene_images[0].save(tmp_path / "scene.png")
    good = {"image": "scene.png", "question": "what color is the star?"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "question": "is it red\u2028or blue?"}, ensure_ascii=False),  # one line, one request
        json.dumps({**good, "question": "why " * 1000}),
        json.dumps(good).replace("}", ', "n": ' + "1" * 5000 + "}"),
        json.dumps(good).replace("}", ', "n": NaN}'),
        json.dumps({**good, "image": "scene\u0000.png"}),
        "x" * (reader.MAX_LINE_BYTES + 1),
        json.dumps(good),  # after an over-long line nothing is read
    ]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = cli(capsys, "ask", "--model", str(tiny_models[Task.VQA]), "--json", "--input", str(requests))
    assert code == 1
    assert "answer" in out[0] and out[1]["question"] == "is it red\u2028or blue?"
    errors = [o.get("error", "") for o in out[2:]]
    assert [e.split(": ")[0] for e in errors] == [f"{requests}:{n}" for n in range(3, 8)]
    for error, words in zip(errors, ("4,000 characters", "5,000 digits", "NaN is not", "expected", "1 MiB")):
        assert words in error, (words, error)


def test_input_that_is_a_folder_is_one_line_error(capsys, tiny_models, tmp_path):
    code, _, text = cli(capsys, "match", "--model", str(tiny_models[Task.ITM]), "--input", str(tmp_path))
    assert code == 2 and "cannot read" in text and "Traceback" not in text


# ------------------------------------------------------------------------------ teaching


def test_teaching_checks_rows_as_the_reader_does(tmp_path, world):
    from mmstudio.imaging import load_image
    from mmstudio.teach import add_correction

    image = load_image(world / "images" / "000000.png")
    folder = tmp_path / "taught"
    with pytest.raises(DatasetError, match="caption is 9,000 characters"):
        add_correction(folder, image, caption="pink " * 1800)
    assert not (folder / "metadata.jsonl").exists()
    add_correction(folder, image, question="what  color\u2028is it?", answer="pink")
    assert read_dataset(folder, Task.VQA).examples[0].text == "what color is it?"
    shutil.copytree(world / "images", tmp_path / "csv" / "images")
    write_csv(tmp_path / "csv", ["file_name", "caption"], [["images/000000.png", "a red circle"]])
    with pytest.raises(DatasetError, match="metadata.csv"):
        add_correction(tmp_path / "csv", image, caption="a pink hexagon")
    assert read_dataset(tmp_path / "csv", Task.CAPTION).rows == 1


def test_a_corrupt_image_is_reported_with_the_row_problems_not_after_them(tmp_path, world):
    rows = rows_of(world)
    rows[1] = {"caption": "a red circle"}  # no file_name
    folder = copy_with(tmp_path, world, "both", rows)
    broken = folder / rows[3]["file_name"]
    broken.write_bytes(b"\x89PNG garbage, not an image")
    problems = problems_of(lambda: read_dataset(folder, Task.CAPTION))
    assert len(problems) == 2
    assert "metadata.jsonl:2" in problems[0] and "metadata.jsonl:4" in problems[1]
