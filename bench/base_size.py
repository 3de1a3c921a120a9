"""Base-size BLIP checkpoints with random weights, for benchmarks that must not depend on the network.

    python bench/base_size.py [caption|vqa|retrieval ...]   # build (if missing) and print the folders

The hyper-parameters are those of Salesforce/blip-image-captioning-base,
blip-vqa-base and blip-itm-base-coco: a ViT-B/16 at 384 px (hidden 768, 12
layers, 12 heads, MLP 3072) and a BERT-base text model (vocabulary 30,524,
hidden 768, 12 layers, 12 heads, MLP 3072, 512 positions), projections 512 /
256. Only the weights are random, so every forward pass costs what the real
model's does; greedy decoding with random weights rarely meets [SEP], so the
benchmarks fix max_new_tokens and both sides generate the same length.

The tokenizer is mmstudio's word-level one (mmstudio/training/blank.py) over
the Shapes World words, filled up with placeholder words to the model's 30,524
ids, so every id the decoder picks decodes to a word. Folders are saved in the
hub's layout (safetensors) under ~/.cache/mmstudio/bench (or
$XDG_CACHE_HOME/mmstudio/bench) and rebuilt when missing or built by an older
version of this file.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmstudio.models.base import Task  # noqa: E402
from mmstudio.paths import cache_dir  # noqa: E402

VERSION = 1  # bump when the built checkpoints change
VOCAB_SIZE = 30524  # BERT-base's 30,522 word pieces + [DEC] + one spare, as in the BLIP base configs
KINDS = {"caption": Task.CAPTION, "vqa": Task.VQA, "retrieval": Task.ITM}
STAMP = "mmstudio-bench.json"


def folder_for(kind: str) -> Path:
    return cache_dir() / "bench" / f"blip-base-{kind}"


def base_config(task: Task, tokenizer):
    """The BlipConfig of the Salesforce base checkpoints, with our tokenizer's special ids."""
    from transformers import BlipConfig

    from mmstudio.training.blank import ARCHITECTURE_FOR_TASK

    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=768,
        encoder_hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=512,
        projection_dim=768,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    vision = dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=384,
        patch_size=16,
        projection_dim=512,
        # The hub configs say 1e-10 (the weights were trained anyway); 0.02 keeps random features
        # image-dependent, so "same output" compares more than one repeated caption.
        initializer_range=0.02,
    )
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=512, image_text_hidden_size=256)
    config.architectures = [ARCHITECTURE_FOR_TASK[task]]
    return config


def build_processor():
    from mmstudio.training.blank import SPECIAL_TOKENS
    from mmstudio.training.blank import build_processor as blank_processor
    from mmstudio.world import all_words

    words = sorted(set(all_words()))
    real = len(SPECIAL_TOKENS) + 1 + len(words)  # specials, "?", the world's words
    filler = [f"w{i:05d}" for i in range(VOCAB_SIZE - real)]
    processor = blank_processor([*words, *filler], image_size=384)
    assert len(processor.tokenizer) == VOCAB_SIZE, len(processor.tokenizer)
    return processor


def build(kind: str, out: Path, seed: int = 0) -> Path:
    import torch
    import transformers

    from mmstudio.training.blank import save_checkpoint

    task = KINDS[kind]
    processor = build_processor()
    config = base_config(task, processor.tokenizer)
    torch.manual_seed(seed)
    model = getattr(transformers, config.architectures[0])(config).eval()
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, processor, tmp)
    params = sum(p.numel() for p in model.parameters())
    (tmp / STAMP).write_text(json.dumps({"version": VERSION, "kind": kind, "parameters": params}) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def checkpoint(kind: str, *, log=print) -> Path:
    """The folder of the base-size `kind` checkpoint ("caption", "vqa", "retrieval"), built if missing."""
    out = folder_for(kind)
    try:
        stamp = json.loads((out / STAMP).read_text())
        if stamp.get("version") == VERSION and (out / "model.safetensors").is_file():
            return out
    except (OSError, ValueError):
        pass
    log(f"building the base-size BLIP {kind} checkpoint (random weights) in {out} ...")
    return build(kind, out)


def main() -> None:
    for kind in sys.argv[1:] or list(KINDS):
        print(kind, checkpoint(kind))


if __name__ == "__main__":
    main()
