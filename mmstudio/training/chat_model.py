"""The built-in chat model: a tiny LLaVA (CLIP-layout vision tower, Llama language model, MLP projector) that
talks about Shapes World, so the image-text-to-text family runs out of the box and its per-word maps can be
measured against the scenes' true boxes.

Pre-training then fine-tuning, as LLaVA does: the vision tower is the built-in caption model's (BLIP's ViT,
its weights moved into CLIP's layout, `vision_from_blip`), which already sees objects; the projector and the
language model learn from scratch on conversations about training scenes: "Describe this image." answered
by the caption, and the scene's questions, several turns to a conversation (`conversations`), the loss on
the assistant's turns alone. Everything is saved in the hub's format: `AutoModelForImageTextToText` and
`AutoProcessor` load it, and its chat template writes conversations as any LLaVA's does.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmstudio.models.base import Task
from mmstudio.storage import write_json_atomic
from mmstudio.training.checkpoints import RUN_RECORD
from mmstudio.training.data import PixelStore, read_dataset
from mmstudio.training.run import _bf16_ok, cpu_bf16_ok
from mmstudio.world.texts import DESCRIBE
from mmstudio.world.vocab import ABSENT_ANSWER

SPECIALS = ("<pad>", "<unk>", "<s>", "<end>", "<image>", "<user>", "<assistant>")
INSTRUCTION = DESCRIBE
INSTRUCTION_WORDS = ("describe", "this", "image", ".")
# One turn: <user>, the image (first turn only), the text, <end>; then <assistant>, the reply, <end>.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<user>{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end>"
    "{% else %}<assistant>{% for c in m['content'] %} {{ c['text'] }}{% endfor %}<end>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}")


@dataclass(frozen=True)
class ChatShape:
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 768


def chat_words(caption_model: Path) -> list[str]:
    """The tokenizer's words: the special tokens, the instruction's words, then the caption model's words
    (less BERT's own special tokens) and the absent-object answer."""
    known = [w for w in (Path(caption_model) / "vocab.txt").read_text(encoding="utf-8").split()
             if not (w.startswith("[") and w.endswith("]"))]
    words = [*SPECIALS, *INSTRUCTION_WORDS]
    words += [w for w in [*known, ABSENT_ANSWER] if w not in words]
    return words


def build_tokenizer(words: Sequence[str]):
    """Word level: lower case, split at spaces and punctuation ("star?" is "star", "?"), joined by spaces."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces
    core.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIALS])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="<end>", extra_special_tokens={"image_token": "<image>"})


def caption_vision(caption_model: Path):
    """The caption model's ViT (BLIP's vision model), in float32, for inference."""
    import torch
    from transformers import BlipForConditionalGeneration

    return BlipForConditionalGeneration.from_pretrained(caption_model, dtype=torch.float32).vision_model.eval()


def build_chat_model(caption_model: Path, shape: ChatShape = ChatShape(), seed: int = 1, blip=None):
    """(model, processor): the vision tower from the caption model (`blip`: its ViT, when already loaded), the
    rest new."""
    import torch
    from transformers import (
        AutoImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    caption_model = Path(caption_model)
    words = chat_words(caption_model)
    tokenizer = build_tokenizer(words)
    blip = blip if blip is not None else caption_vision(caption_model)
    seen = blip.config
    vision = CLIPVisionConfig(hidden_size=seen.hidden_size, intermediate_size=seen.intermediate_size,
                              num_hidden_layers=seen.num_hidden_layers, num_attention_heads=seen.num_attention_heads,
                              image_size=seen.image_size, patch_size=seen.patch_size, hidden_act=seen.hidden_act,
                              layer_norm_eps=seen.layer_norm_eps, projection_dim=seen.projection_dim)
    text = LlamaConfig(vocab_size=len(words), hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.heads, max_position_embeddings=1024, tie_word_embeddings=True,
                       pad_token_id=words.index("<pad>"), bos_token_id=words.index("<s>"),
                       eos_token_id=words.index("<end>"))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=words.index("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu", tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = words.index("<end>")
    model.generation_config.pad_token_id = words.index("<pad>")
    images = AutoImageProcessor.from_pretrained(caption_model)  # BLIP's: the whole picture at 128 px, no crop
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=seen.patch_size,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    vision_from_blip(model.model.vision_tower, blip)
    return model, processor


def vision_from_blip(clip, blip) -> None:
    """BLIP's ViT into CLIP's layout, which LLaVA loads: the fused qkv split in three, the patch convolution's
    bias folded into the patch positions (CLIP's has none). CLIP's extra layer norm before the first layer (BLIP
    has none) is left as built: `distill_vision` teaches the tower around it."""
    import torch

    with torch.no_grad():
        source, target = blip.embeddings, clip.embeddings
        target.patch_embedding.weight.copy_(source.patch_embedding.weight)
        target.class_embedding.copy_(source.class_embedding.reshape(-1))
        positions = source.position_embedding[0].clone()
        positions[1:] += source.patch_embedding.bias
        target.position_embedding.weight.copy_(positions)
        for mine, theirs in zip(clip.encoder.layers, blip.encoder.layers):
            q, k, v = theirs.self_attn.qkv.weight.chunk(3)
            qb, kb, vb = theirs.self_attn.qkv.bias.chunk(3)
            for proj, w, b in ((mine.self_attn.q_proj, q, qb), (mine.self_attn.k_proj, k, kb),
                               (mine.self_attn.v_proj, v, vb)):
                proj.weight.copy_(w)
                proj.bias.copy_(b)
            mine.self_attn.out_proj.load_state_dict(theirs.self_attn.projection.state_dict())
            for name in ("layer_norm1", "layer_norm2", "mlp"):
                getattr(mine, name).load_state_dict(getattr(theirs, name).state_dict())
        clip.post_layernorm.load_state_dict(blip.post_layernorm.state_dict())


def distill_vision(clip, blip, pixels, *, steps: int, batch_size: int, seed: int, bf16: bool = False,
                   emit=print) -> float:
    """Teach the CLIP-layout tower to give the BLIP tower's features (mean squared error of the normalized
    last layer) on training pictures: CLIP's layer norm before the first layer, which BLIP has not, changes
    them (cosine 0.26 to BLIP's right after the move, on a scene). Returns the final cosine similarity.
    bf16: the tower's own pass in bfloat16 autocast on the CPU (where it has AMX or AVX512-BF16; the chat stage
    then trains in it too), the target and the loss in float32."""
    import torch

    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=3e-4, weight_decay=0.0)
    clip.train()
    cosine = 0.0
    for step in range(steps):
        batch = pixels.batch(np.sort(rng.choice(len(pixels.pixels), batch_size, replace=False)))
        with torch.no_grad():
            target = blip(batch).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mine = clip.post_layernorm(clip(batch).last_hidden_state)
        loss = torch.nn.functional.mse_loss(mine.float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # linear decay to zero
            group["lr"] = 3e-4 * (1 - (step + 1) / steps)
        cosine = torch.nn.functional.cosine_similarity(mine.detach(), target, dim=-1).mean().item()
        if step % 50 == 0 or step == steps - 1:
            emit({"event": "distill", "step": step + 1, "total": steps, "loss": round(loss.item(), 4),
                  "cosine": round(cosine, 4)})
    clip.eval()
    return cosine


# ------------------------------------------------------------------ conversations


def conversations(captions: Sequence[str], questions: Sequence[Sequence[tuple[str, str]]], *, turns: int,
                  caption_share: float, seed: int) -> list[list[tuple[str, str]]]:
    """Per scene, one conversation of `turns` (user, assistant) turns: the caption instruction first for
    `caption_share` of the scenes (elsewhere at a random later turn, or not at all), then its questions."""
    rng = random.Random(seed)
    out = []
    for caption, pool in zip(captions, questions):
        picked = rng.sample(list(pool), min(len(pool), turns))
        convo = list(picked)
        if rng.random() < caption_share:
            convo.insert(0, (INSTRUCTION, caption))
        elif rng.random() < 0.5:
            convo.insert(rng.randrange(1, len(convo) + 1), (INSTRUCTION, caption))
        out.append(convo[:turns])
    return out


class Encoder:
    """Token ids and training labels of a conversation, exactly as the processor and the chat template write
    it (tests check the two agree): the loss is on the assistant's words and its <end>."""

    def __init__(self, tokenizer, image_tokens: int):
        self.tokenizer = tokenizer
        ids = tokenizer.convert_tokens_to_ids
        self.user, self.assistant, self.end, self.image = ids("<user>"), ids("<assistant>"), ids("<end>"), ids(
            "<image>")
        self.image_tokens = image_tokens
        self.cache: dict[str, list[int]] = {}

    def words(self, text: str) -> list[int]:
        found = self.cache.get(text)
        if found is None:
            found = self.cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return found

    def __call__(self, turns: Sequence[tuple[str, str]]) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        labels: list[int] = []
        for i, (asked, replied) in enumerate(turns):
            prompt = [self.user, *([self.image] * self.image_tokens if i == 0 else []), *self.words(asked),
                      self.end, self.assistant]
            reply = [*self.words(replied), self.end]
            ids += prompt + reply
            labels += [-100] * len(prompt) + reply
        return ids, labels


def chat_batch(items: Sequence[int], captions: Sequence[str], pools: Sequence, pixels, encoder: Encoder,
               training: "ChatTraining") -> dict:
    """The training batch of `items`: item i is scene i modulo the scenes, in a conversation drawn from the seed
    and i (so an item's conversation is the same in every run)."""
    scenes = len(captions)
    convos = [conversations([captions[i % scenes]], [pools[i % scenes]], turns=training.turns,
                            caption_share=training.caption_share, seed=training.seed * 7919 + i)[0]
              for i in items]
    batch = batch_of([encoder(c) for c in convos], encoder.tokenizer.pad_token_id)
    batch["pixel_values"] = pixels.batch([i % scenes for i in items])
    return batch


def batch_of(encoded: Sequence[tuple[list[int], list[int]]], pad: int) -> dict:
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = np.full((len(encoded), width), pad, np.int64)
    labels = np.full((len(encoded), width), -100, np.int64)
    mask = np.zeros((len(encoded), width), np.int64)
    for row, (i, lab) in enumerate(encoded):
        ids[row, :len(i)], labels[row, :len(lab)], mask[row, :len(i)] = i, lab, 1
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask)}


# ------------------------------------------------------------------ training


@dataclass(frozen=True)
class ChatTraining:
    steps: int = 1950
    batch_size: int = 64
    distill_steps: int = 200  # the vision tower, to BLIP's features first (distill_vision)
    learning_rate: float = 1e-3  # the projector and the language model: new
    vision_learning_rate: float = 1e-4  # the caption model's vision tower: already trained (0: kept as is)
    # Short conversations, nearly all with the caption: at 8 turns of 32 (a caption in 3 of 4) captions were
    # 84.9 % right on new scenes; 5 turns of 48 (caption in 85 %), 90.2 %; 4 turns of 64 (90 %), 92.1 %.
    turns: int = 4
    caption_share: float = 0.9
    warmup_ratio: float = 0.05
    weight_decay: float = 0.05
    seed: int = 1
    log_every: int = 50
    # Every training scene (90,000 in the recipe): on the first 30,000 the captions of training scenes were
    # 89.5 % right and of new ones 84.9 %.
    rows: int | None = None


def scene_texts(data: Path, rows: int | None = None) -> tuple:
    """(dataset, captions, question-answer pools) of a Shapes World folder (its first `rows` scenes), one of
    each per image."""

    # No image check here: PixelStore decodes every picture when it builds its array, and a cached array is named
    # by the files' sizes and times, so a changed picture is decoded (and checked) again.
    asked = read_dataset(data, Task.VQA, check_images=False, rows=rows)
    described = read_dataset(data, Task.CAPTION, check_images=False, rows=rows)
    if described.images != asked.images:
        raise ValueError(f"{data}: captions and questions name different images")
    captions = [""] * len(asked.images)
    for example in described.examples:
        captions[example.image] = example.text
    pools: list[list[tuple[str, str]]] = [[] for _ in asked.images]
    for example in asked.examples:
        pools[example.image].append((example.text, example.answer))
    return asked, captions, pools


def train_chat(caption_model: Path, data: Path, out: Path, training: ChatTraining = ChatTraining(), *,
               pixel_cache: Path | None = None, emit=print) -> Path:
    """Train the chat model on the scenes in `data`; saved to `out` (written beside it, then renamed)."""
    import shutil
    import time

    import torch
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments


    out = Path(out)
    started = time.monotonic()
    blip = caption_vision(caption_model)
    model, processor = build_chat_model(caption_model, seed=training.seed, blip=blip)
    dataset, captions, pools = scene_texts(data, training.rows)
    pixels = PixelStore(dataset, processor.image_processor, cache=pixel_cache)
    # Plain matmul attention to train: these sequences are short (~130 tokens), and CPU's fused kernel took 30 % of
    # a step in its backward pass (python bench/chat_train_step.py: 0.67 s a step against 0.90 s, 1.33x).
    # The saved model names no attention: whoever loads it picks the kernel.
    model.set_attn_implementation("eager")
    distill_vision(model.model.vision_tower, blip, pixels, steps=training.distill_steps,
                   batch_size=training.batch_size, seed=training.seed, bf16=cpu_bf16_ok(), emit=emit)
    del blip
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    encoder = Encoder(processor.tokenizer, side * side)
    total = training.steps * training.batch_size
    emit({"event": "model", "parameters": sum(p.numel() for p in model.parameters()), "scenes": len(captions)})

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return total

        def __getitem__(self, i):
            return {"item": i}

    def collate(items):
        return chat_batch([item["item"] for item in items], captions, pools, pixels, encoder, training)

    vision = [p for n, p in model.named_parameters() if ".vision_tower." in f".{n}"]
    rest = [p for n, p in model.named_parameters() if ".vision_tower." not in f".{n}"]
    groups = [{"params": rest, "lr": training.learning_rate}]
    if training.vision_learning_rate > 0:
        groups.append({"params": vision, "lr": training.vision_learning_rate})
    else:  # the tower as distilled: no gradients through it, a faster step
        for parameter in vision:
            parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(groups, weight_decay=training.weight_decay)
    work = out.with_name(out.name + ".training")
    shutil.rmtree(work, ignore_errors=True)
    args = TrainingArguments(output_dir=str(work), per_device_train_batch_size=training.batch_size,
                             max_steps=training.steps, learning_rate=training.learning_rate,
                             lr_scheduler_type="cosine", warmup_steps=int(training.steps * training.warmup_ratio),
                             logging_steps=training.log_every, save_strategy="no", report_to=[],
                             seed=training.seed, dataloader_num_workers=0, remove_unused_columns=False,
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(), bf16=_bf16_ok(torch),
                             max_grad_norm=1.0)

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                emit({"event": "log", "step": state.global_step, "total": training.steps,
                      "loss": round(float(logs["loss"]), 4), "seconds": round(time.monotonic() - started, 1)})

    trainer = Trainer(model=model, args=args, train_dataset=Items(), data_collator=collate,
                      optimizers=(optimizer, None), callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model.eval()
    staged = out.with_name(out.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    model.save_pretrained(staged)
    processor.save_pretrained(staged)
    model.generation_config.save_pretrained(staged)
    record = {"kind": "chat", "config": asdict(training), "data": str(data), "base": str(caption_model),
              "finished": True, "steps": training.steps, "seconds": round(time.monotonic() - started, 1)}
    write_json_atomic(staged / RUN_RECORD, record)
    shutil.rmtree(out, ignore_errors=True)
    staged.replace(out)
    shutil.rmtree(work, ignore_errors=True)
    emit({"event": "done", "out": str(out), "seconds": round(time.monotonic() - started, 1)})
    return out
