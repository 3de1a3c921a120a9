"""Dataset validation, the Trainer-based engine, checkpoints, resume, vocabulary growth, LoRA."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import DatasetError, MMStudioError
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.training.checkpoints import latest_checkpoint, read_run_record
from mmstudio.training.data import read_dataset
from mmstudio.training.run import TrainConfig, train
from mmstudio.world import generate_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("world") / "data", 24, seed=3, size=96)


def tiny(task: Task, data, out, **kw) -> TrainConfig:
    defaults = dict(base="scratch", size="tiny", steps=4, batch_size=4, save_every=2, log_every=1,
                    learning_rate=1e-3, bf16=False, threads=1)
    defaults.update(kw)
    return TrainConfig(task=task, data=data, out=out, **defaults)


def test_every_bad_row_is_reported_with_file_and_line(tmp_path, world):
    data = tmp_path / "bad"
    shutil.copytree(world, data)
    rows = (data / "metadata.jsonl").read_text().splitlines()
    rows[1] = "{broken json"
    def change(line: int, edit) -> None:
        row = json.loads(rows[line])
        edit(row)
        rows[line] = json.dumps(row)

    change(2, lambda row: row.pop("file_name"))
    change(3, lambda row: row.update(file_name="images/missing.png"))
    change(4, lambda row: row.update(file_name="../../etc/passwd"))
    change(5, lambda row: (row.pop("caption"), row.pop("questions")))
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(data, Task.CAPTION)
    problems = info.value.problems
    assert len(problems) == 5
    for line, words in ((2, "not valid JSON"), (3, "no file_name"), (4, "not found"), (5, "outside"),
                        (6, "no caption")):
        assert any(f"metadata.jsonl:{line}: " in p and words in p for p in problems), (line, problems)


def test_broken_image_is_a_row_problem(tmp_path, world):
    data = tmp_path / "broken"
    shutil.copytree(world, data)
    (data / "images" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match="metadata.jsonl:4"):
        read_dataset(data, Task.VQA)


def test_csv_metadata(tmp_path, world):
    data = tmp_path / "csv"
    (data / "images").mkdir(parents=True)
    shutil.copy(world / "images" / "000000.png", data / "images" / "a.png")
    (data / "metadata.csv").write_text('file_name,caption\nimages/a.png,"a small red circle"\n')
    dataset = read_dataset(data, Task.CAPTION)
    assert dataset.examples[0].text == "a small red circle"


def test_rows_takes_the_first_rows_only(world):
    whole = read_dataset(world, Task.VQA)
    first = read_dataset(world, Task.VQA, rows=5)
    assert first.rows == 5 and first.images == whole.images[:5]
    assert first.examples == [e for e in whole.examples if e.image < 5]


def test_train_each_task_and_load_the_result(tmp_path, world):
    for task in Task:
        events = []
        out = train(tiny(task, world, tmp_path / task.value), events.append)
        progress = [e for e in events if e["event"] == "progress"]
        assert [e["step"] for e in progress] == [1, 2, 3, 4]
        assert set(progress[0]) >= {"step", "total", "loss", "lr", "elapsed", "eta"}
        assert events[-1]["event"] == "done" and events[-1]["finished"]
        assert read_run_record(out)["finished"]
        image = load_image(world / "images" / "000000.png")
        engine = Engine()
        if task == Task.CAPTION:
            assert isinstance(engine.caption([image], model=str(out))[0].caption, str)
        elif task == Task.VQA:
            assert isinstance(engine.ask(image, ["how many objects are there?"], model=str(out))[0].answer, str)
        else:
            assert 0 <= engine.match(image, ["a red circle"], model=str(out))[0].itm <= 1


def test_incomplete_checkpoint_is_never_the_latest(tmp_path, world):
    out = train(tiny(Task.CAPTION, world, tmp_path / "run"), lambda e: None)
    latest = latest_checkpoint(out)
    assert latest is not None and latest.name == "checkpoint-4"
    half = out / "checkpoints" / "checkpoint-6"
    shutil.copytree(latest, half)
    (half / "trainer_state.json").write_text('{"global_step": 6, "trunc')
    assert latest_checkpoint(out) == latest


def test_resume_continues_from_the_latest_checkpoint(tmp_path, world):
    out = tmp_path / "run"
    train(tiny(Task.CAPTION, world, out, steps=6, max_minutes=0.0), lambda e: None)  # stops after step 1
    record = read_run_record(out)
    assert not record["finished"]
    events = []
    train(tiny(Task.CAPTION, world, out, steps=6, resume=True), events.append)
    assert events[-1]["finished"] and events[-1]["step"] == 6
    assert any(e["event"] == "resume" for e in events)


def test_output_folder_must_be_new_unless_resuming(tmp_path, world):
    out = tmp_path / "used"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(MMStudioError, match="not empty"):
        train(tiny(Task.CAPTION, world, out), lambda e: None)


def test_new_words_grow_the_vocabulary(tmp_path, world):
    base = train(tiny(Task.CAPTION, world, tmp_path / "base"), lambda e: None)
    data = tmp_path / "hex"
    generate_dataset(data, 12, seed=5, size=96, shapes=("hexagon", "circle"), colors=("pink", "blue"))
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    for row in rows:
        row["caption"] = row["caption"] + " wobbly"  # a word no vocabulary has
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    events = []
    out = train(tiny(Task.CAPTION, data, tmp_path / "tuned", base=str(base)), events.append)
    prepared = next(e for e in events if e["event"] == "prepared")
    assert "wobbly" in prepared["new_words"]
    from transformers import AutoTokenizer

    assert "wobbly" in AutoTokenizer.from_pretrained(out).get_vocab()
    assert isinstance(Engine().caption([load_image(data / rows[0]["file_name"])], model=str(out))[0].caption, str)


def test_lora_training_gives_a_plain_checkpoint(tmp_path, world):
    pytest.importorskip("peft")
    base = train(tiny(Task.CAPTION, world, tmp_path / "base"), lambda e: None)
    events = []
    out = train(tiny(Task.CAPTION, world, tmp_path / "lora", base=str(base), lora=True), events.append)
    model_event = next(e for e in events if e["event"] == "model")
    assert model_event["trainable"] < model_event["parameters"] / 2
    assert (out / "lora_adapter.safetensors").is_file()
    assert isinstance(Engine().caption([load_image(world / "images" / "000001.png")], model=str(out))[0].caption,
                      str)
    # The rows of the words the captions use are trained (tied: what the decoder reads is what it writes);
    # the rows of words that never appear are left alone.
    from transformers import AutoTokenizer, BlipForConditionalGeneration

    before, after = (BlipForConditionalGeneration.from_pretrained(f).text_decoder for f in (base, out))
    vocab = AutoTokenizer.from_pretrained(out).get_vocab()
    changed = (after.bert.embeddings.word_embeddings.weight - before.bert.embeddings.word_embeddings.weight).abs()
    changed = changed.amax(dim=1)
    assert changed[vocab["circle"]] > 0 and changed[vocab["[MASK]"]] == 0
    assert after.cls.predictions.decoder.weight.data_ptr() == after.bert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.parametrize("trainable", [0, 1])
def test_kept_vision_layers_stay_as_the_base_has_them(tmp_path, world, trainable):
    from safetensors.torch import load_file

    base = train(tiny(Task.CAPTION, world, tmp_path / "base"), lambda e: None)
    events = []
    out = train(tiny(Task.ITM, world, tmp_path / "itm", base=str(base), vision_trainable_layers=trainable),
                events.append)
    model_event = next(e for e in events if e["event"] == "model")
    before, after = (load_file(str(f / "model.safetensors")) for f in (base, out))
    vision = [k for k in after if k.startswith("vision_model.")]
    # The tiny tower has two layers: with one trainable, the top one and the final norm learn.
    learns = [k for k in vision if trainable and (k.startswith(("vision_model.encoder.layers.1.",
                                                                "vision_model.post_layernorm.")))]
    kept = [k for k in vision if k not in learns]
    assert kept and all(after[k].equal(before[k]) for k in kept)
    assert all(not after[k].equal(before[k]) for k in learns if k.endswith("weight"))
    assert sum(after[k].numel() for k in kept) == model_event["parameters"] - model_event["trainable"]
    text = "text_encoder.encoder.layer.0.attention.self.query.weight"
    assert not after[text].equal(before[text.replace("text_encoder", "text_decoder.bert")])
    assert read_run_record(out)["config"]["vision_trainable_layers"] == trainable


@pytest.mark.parametrize("change, field", [(dict(base="scratch"), "vision_trainable_layers"),
                                           (dict(grounding=True), "grounding")])
def test_a_kept_vision_tower_refuses_what_would_teach_it(tmp_path, world, change, field):
    from mmstudio.errors import SettingsError

    config = tiny(Task.ITM, world, tmp_path / "out", **{"base": "builtin", "vision_trainable_layers": 0, **change})
    with pytest.raises(SettingsError) as info:
        config.validate()
    assert info.value.name == field


def test_teach_from_corrections(tmp_path, world):
    from mmstudio.teach import add_correction

    folder = tmp_path / "taught"
    image = load_image(world / "images" / "000002.png")
    add_correction(folder, image, caption="a small pink hexagon")
    add_correction(folder, image, question="what color is the hexagon?", answer="pink")
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["file_name"] == rows[1]["file_name"]
    assert len(list((folder / "images").iterdir())) == 1
    assert read_dataset(folder, Task.CAPTION).examples[0].text == "a small pink hexagon"
    assert read_dataset(folder, Task.VQA).examples[0].answer == "pink"


def test_best_threshold_separates_positives_from_negatives():
    import numpy as np

    from mmstudio.training.calibration import best_threshold

    cut, accuracy = best_threshold(np.array([2.0, 3.0, 4.0]), np.array([0.5, 1.0, 1.5, 2.5]))
    assert 1.5 < cut < 2.0 and accuracy == 6 / 7
    cut, accuracy = best_threshold(np.array([5.0]), np.array([1.0]))
    assert 1.0 < cut < 5.0 and accuracy == 1.0


def test_calibrated_itm_head_puts_the_best_cut_at_one_half(tmp_path, world):
    from mmstudio.training.calibration import _margins, best_threshold, calibrate_itm

    out = train(tiny(Task.ITM, world, tmp_path / "itm", steps=6))
    report = calibrate_itm(out, world)
    positives, negatives = _margins(Engine().adapter(Task.ITM, str(out)), world)
    accuracy_at_half = ((positives > 0).sum() + (negatives < 0).sum()) / (len(positives) + len(negatives))
    assert accuracy_at_half == pytest.approx(report["selection_accuracy_after"], abs=1e-3)
    assert abs(best_threshold(positives, negatives)[0]) < 0.05


def test_itm_batches_carry_several_distinct_hard_negatives_per_image(tmp_path, world):
    from transformers import BlipProcessor

    from mmstudio.training.data import PixelStore
    from mmstudio.training.objectives import Collator

    out = train(tiny(Task.ITM, world, tmp_path / "itm", negatives_per_image=3))
    assert read_run_record(out)["finished"]
    dataset = read_dataset(world, Task.ITM)
    processor = BlipProcessor.from_pretrained(out)
    collator = Collator(Task.ITM, dataset, PixelStore(dataset, processor.image_processor), processor.tokenizer,
                        negatives_per_image=3)
    batch = collator([0, 1])
    assert batch["neg_input_ids"].shape[0] == batch["neg_valid"].shape[0] == 6
    for image in range(2):
        texts = processor.tokenizer.batch_decode(batch["neg_input_ids"][3 * image:3 * image + 3],
                                                 skip_special_tokens=True)
        assert len(set(texts)) == 3 and set(texts) <= set(dataset.examples[image].negatives)


def test_order_share_draws_reordered_captions_as_negatives(tmp_path, world):
    from transformers import BlipProcessor

    from mmstudio.training.data import PixelStore
    from mmstudio.training.objectives import Collator

    out = train(tiny(Task.ITM, world, tmp_path / "itm", steps=1, order_share=1.0))
    dataset = read_dataset(world, Task.ITM)
    processor = BlipProcessor.from_pretrained(out)
    collator = Collator(Task.ITM, dataset, PixelStore(dataset, processor.image_processor), processor.tokenizer,
                        order_share=1.0)
    rows = [i for i, e in enumerate(dataset.examples)
            if any(sorted(n.split()) == sorted(e.text.split()) for n in e.negatives)]
    assert rows, "the fixture world has scenes with two or more objects"
    for _ in range(3):
        batch = collator(rows)
        for i, text in zip(rows, processor.tokenizer.batch_decode(batch["neg_input_ids"], skip_special_tokens=True)):
            assert text != dataset.examples[i].text and sorted(text.split()) == sorted(dataset.examples[i].text.split())


def test_pixel_array_built_on_threads_gives_the_processors_own_pixels(world):
    """Training's pixels are the image processor's at inference, bit for bit, whichever thread read each image."""
    import torch
    from transformers import BlipImageProcessor

    from mmstudio.training.data import PixelStore

    dataset = read_dataset(world, Task.CAPTION)
    processor = BlipImageProcessor(size={"height": 32, "width": 32})
    batch = PixelStore(dataset, processor).batch(range(len(dataset.images)))
    own = processor(images=[load_image(path) for path in dataset.images], return_tensors="pt")["pixel_values"]
    assert batch.dtype == torch.float32 and torch.equal(batch, own)


def test_pixel_cache_serves_the_same_pixels_and_notices_a_changed_image(tmp_path, world):
    from transformers import BlipImageProcessor

    from mmstudio.training.data import PixelStore

    data = tmp_path / "data"
    shutil.copytree(world, data)
    dataset = read_dataset(data, Task.CAPTION)
    processor = BlipImageProcessor(size={"height": 32, "width": 32})
    fresh = PixelStore(dataset, processor, cache=tmp_path / "cache")
    (stored,) = (tmp_path / "cache").glob("pixels-*.npy")
    cached = PixelStore(dataset, processor, cache=tmp_path / "cache")
    assert cached.pixels.shape == fresh.pixels.shape and (cached.pixels == fresh.pixels).all()
    assert (cached.batch([3, 1]) == fresh.batch([3, 1])).all()

    first = dataset.images[0]
    load_image(dataset.images[1]).save(first)  # same name, other picture
    changed = PixelStore(read_dataset(data, Task.CAPTION), processor, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("pixels-*.npy"))) == 2
    assert (changed.pixels[0] == fresh.pixels[1]).all() and stored.is_file()


def test_reuse_matches_records_written_before_a_setting_existed(tmp_path):
    from mmstudio.training.recipe import same_training
    from mmstudio.training.run import _jsonable

    config = TrainConfig(task=Task.VQA, data=tmp_path / "train", out=tmp_path / "vqa", base="caption", steps=40)
    old = {k: v for k, v in _jsonable(dataclasses.asdict(config)).items() if k not in ("rows", "negatives_per_image")}
    assert same_training({"finished": True, "config": old}, config)
    assert not same_training({"finished": True, "config": old}, dataclasses.replace(config, rows=30000))
    assert not same_training({"finished": False, "config": old}, config)


def test_retrieval_from_a_caption_model_takes_the_decoders_text_weights(tmp_path):
    import torch
    from transformers import BlipForImageTextRetrieval

    from mmstudio.training.blank import build_model
    from mmstudio.training.run import PreparedJob, build_start_model
    from mmstudio.world.vocab import all_words

    caption, processor = build_model(Task.CAPTION, sorted(all_words()), "tiny", seed=1)
    caption.save_pretrained(tmp_path / "caption")
    processor.save_pretrained(tmp_path / "caption")
    decoder = {k: v for k, v in caption.state_dict().items() if k.startswith("text_decoder.bert.")}
    vqa_job = PreparedJob(TrainConfig(task=Task.VQA, data=tmp_path, out=tmp_path / "v", base=str(tmp_path / "caption")),
                          dataset=None, base_description="")
    itm_job = dataclasses.replace(vqa_job, config=dataclasses.replace(vqa_job.config, task=Task.ITM))

    retrieval, tokenizer_processor, note = build_start_model(itm_job)
    assert isinstance(retrieval, BlipForImageTextRetrieval) and "from" in note
    own = retrieval.state_dict()
    for key, value in decoder.items():
        name = "text_encoder." + key[len("text_decoder.bert."):]
        if name.endswith("word_embeddings.weight"):
            tok = tokenizer_processor.tokenizer
            rows = own[name]
            # [CLS] starts as [DEC], the first token each reads; every other row is the decoder's own
            assert torch.equal(rows[tok.cls_token_id], value[tok.bos_token_id])
            keep = [i for i in range(rows.shape[0]) if i != tok.cls_token_id]
            assert torch.equal(rows[keep], value[keep])
        else:
            assert torch.equal(own[name], value), name
    # A VQA head has a decoder of its own to take those weights; its question encoder starts fresh.
    vqa, _, _ = build_start_model(vqa_job)
    fresh = vqa.state_dict()["text_encoder.encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(fresh, decoder["text_decoder.bert.encoder.layer.0.attention.self.query.weight"])


def test_partial_share_trains_on_true_partial_descriptions_and_their_misses(tmp_path, world):
    from transformers import BlipProcessor

    from mmstudio.training.data import PixelStore
    from mmstudio.training.objectives import Collator
    from mmstudio.world import describes

    out = train(tiny(Task.ITM, world, tmp_path / "itm", steps=2, partial_share=0.5))
    assert read_run_record(out)["finished"]
    dataset = read_dataset(world, Task.ITM)
    processor = BlipProcessor.from_pretrained(out)
    collator = Collator(Task.ITM, dataset, PixelStore(dataset, processor.image_processor), processor.tokenizer,
                        negatives_per_image=2, partial_share=1.0)
    items = list(range(len(dataset.examples)))
    batch = collator(items)
    decode = processor.tokenizer.batch_decode
    # Every row keeps its caption (ITC learns from all of them); the partials are extra ITM pairs.
    assert decode(batch["input_ids"], skip_special_tokens=True) == [dataset.examples[i].text for i in items]
    partials = decode(batch["partial_input_ids"], skip_special_tokens=True)
    assert len(partials) == 2 * len(items)  # one partial description and one near miss per image
    for text, row, label in zip(partials, batch["partial_image"].tolist(), batch["partial_label"].tolist()):
        assert describes(dataset.objects[dataset.examples[items[row]].image], text) == bool(label), text
    assert batch["partial_label"].sum() == len(items)
    # Their ITC term's targets: which batch images each partial text is true of.
    assert batch["partial_true_of"].tolist() == [[describes(dataset.objects[dataset.examples[i].image], text)
                                                  for i in items] for text in partials]


def test_partial_itc_loss_targets_every_image_a_text_is_true_of():
    import torch

    from mmstudio.training.objectives import _partial_itc_loss

    sim = torch.tensor([[5.0, 5.0, -5.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    true_of = torch.tensor([[True, True, False], [False, False, False], [False, False, True]])
    # Row 0 puts its mass evenly on its two true images, row 1 (true of none) is left out.
    expected = (-torch.log_softmax(sim[0], 0)[:2].mean() - torch.log_softmax(sim[2], 0)[2]) / 2
    assert torch.isclose(_partial_itc_loss(sim, true_of), expected)


def test_itm_batches_say_which_captions_are_true_of_which_images(tmp_path, world):
    from transformers import BlipProcessor

    from mmstudio.training.data import PixelStore
    from mmstudio.training.objectives import Collator
    from mmstudio.world import describes

    out = train(tiny(Task.ITM, world, tmp_path / "itm", steps=1))
    dataset = read_dataset(world, Task.ITM)
    processor = BlipProcessor.from_pretrained(out)
    collator = Collator(Task.ITM, dataset, PixelStore(dataset, processor.image_processor), processor.tokenizer)
    items = list(range(len(dataset.examples)))
    true_of = collator(items)["caption_true_of"]
    examples = [dataset.examples[i] for i in items]
    assert true_of.tolist() == [[describes(dataset.objects[a.image], b.text) for b in examples] for a in examples]
    assert true_of.diagonal().all()


def test_itc_targets_weigh_a_captions_own_scene_above_others_it_is_true_of():
    import torch

    from mmstudio.training.objectives import OWN_CAPTION_WEIGHT, _itc

    sim = torch.tensor([[2.0, 1.0], [0.5, 3.0]])  # images x texts
    same = torch.eye(2, dtype=torch.bool)
    true_of = torch.tensor([[True, True], [False, True]])  # caption 1 is also true of image 0
    w = OWN_CAPTION_WEIGHT
    image_0 = -(w * torch.log_softmax(sim[0], 0)[0] + torch.log_softmax(sim[0], 0)[1]) / (w + 1)
    image_1 = -torch.log_softmax(sim[1], 0)[1]
    text_0 = -torch.log_softmax(sim[:, 0], 0)[0]
    text_1 = -(torch.log_softmax(sim[:, 1], 0)[0] + w * torch.log_softmax(sim[:, 1], 0)[1]) / (w + 1)
    expected = ((image_0 + image_1) / 2 + (text_0 + text_1) / 2) / 2
    assert torch.isclose(_itc(sim, same, true_of), expected)
    # Without objects to check, only a row's own caption is a target, as before.
    plain = (-torch.log_softmax(sim, 1).diagonal().mean() - torch.log_softmax(sim.t(), 1).diagonal().mean()) / 2
    assert torch.isclose(_itc(sim, same), plain)
