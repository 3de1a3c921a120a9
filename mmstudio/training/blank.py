"""Fresh BLIP checkpoints: a word-level tokenizer, the image processor and an untrained model.

Everything is saved in the hub's format, so stock `BlipProcessor.from_pretrained(dir)`
and `Blip*.from_pretrained(dir)` load it with no mmstudio code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mmstudio.models.base import Task

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
ARCHITECTURE_FOR_TASK = {
    Task.CAPTION: "BlipForConditionalGeneration",
    Task.VQA: "BlipForQuestionAnswering",
    Task.ITM: "BlipForImageTextRetrieval",
}


@dataclass(frozen=True)
class ArchitectureSize:
    image_size: int = 128
    patch_size: int = 16  # 128 / 16: an 8 x 8 patch grid
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp: int = 768
    text_hidden: int = 192
    text_layers: int = 3
    text_heads: int = 4
    text_mlp: int = 768
    projection: int = 128
    max_positions: int = 48


SIZES = {
    "small": ArchitectureSize(),
    "small-fine": ArchitectureSize(image_size=96, patch_size=8),
    # For tests: builds in milliseconds, still every part of the real architecture.
    "tiny": ArchitectureSize(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                             vision_mlp=64, text_hidden=32, text_layers=2, text_heads=2, text_mlp=64,
                             projection=16, max_positions=48),
}


def build_vocabulary(words: Sequence[str]) -> list[str]:
    """Special tokens first (BLIP's ids come from here), then "?" and the words, without repeats."""
    vocab = list(SPECIAL_TOKENS)
    for word in ["?", *sorted(set(words))]:
        if word not in vocab:
            vocab.append(word)
    return vocab


def build_processor(words: Sequence[str], image_size: int):
    import transformers
    from transformers import BertTokenizer, BlipProcessor

    vocab = build_vocabulary(words)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, bos_token="[DEC]")
    image_cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    image_processor = image_cls(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_config(task: Task, vocab_size: int, size: ArchitectureSize, tokenizer):
    from transformers import BlipConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=size.text_hidden,
        encoder_hidden_size=size.vision_hidden,
        intermediate_size=size.text_mlp,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        max_position_embeddings=size.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        projection_dim=size.projection,
    )
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_mlp,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        projection_dim=size.projection,
    )
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=size.projection,
                        image_text_hidden_size=size.projection)
    config.architectures = [ARCHITECTURE_FOR_TASK[Task(task)]]
    return config


def build_model(task: Task, words: Sequence[str], size: ArchitectureSize | str = "small", seed: int = 0):
    """(model, processor): an untrained model of the task's BLIP head with its processor."""
    import torch
    import transformers

    size = SIZES[size] if isinstance(size, str) else size
    processor = build_processor(words, size.image_size)
    config = build_config(task, len(processor.tokenizer), size, processor.tokenizer)
    torch.manual_seed(seed)
    model = getattr(transformers, ARCHITECTURE_FOR_TASK[Task(task)])(config)
    init_position_embeddings(model)
    return model, processor


def sincos_2d(rows: int, cols: int, dim: int):
    """(rows * cols, dim) fixed 2-D sine-cosine position codes (as in MAE): half the channels for y, half for x."""
    import torch

    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                            indexing="ij")
    parts = []
    for grid in (ys.reshape(-1), xs.reshape(-1)):
        angles = grid[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    codes = torch.cat(parts, dim=1)
    if codes.shape[1] < dim:
        codes = torch.nn.functional.pad(codes, (0, dim - codes.shape[1]))
    return codes


def init_position_embeddings(model) -> None:
    """Start the ViT's learned position embeddings from 2-D sin-cos codes.

    Still trained; the start tells each patch where it is, which "left to
    right" and counting need, instead of leaving that to be learned from noise.
    """
    import torch

    embeddings = model.vision_model.embeddings
    table = embeddings.position_embedding  # (1, 1 + rows * cols, D)
    patches = table.shape[1] - 1
    side = int(round(patches ** 0.5))
    with torch.no_grad():
        table[0, 0].zero_()
        table[0, 1:] = sincos_2d(side, side, table.shape[2]) * 0.5


def save_checkpoint(model, processor, out: Path) -> Path:
    """Save in the hub's layout (safetensors), plus the files older transformers read."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    processor.image_processor.save_pretrained(out)  # preprocessor_config.json for transformers 4
    vocab = [t for t, _ in sorted(processor.tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return out
