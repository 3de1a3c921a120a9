"""Tiny real checkpoints of the ViT-GPT2, ViLT, CLIP, SigLIP and LLaVA families, saved the hub's way.

Random weights, hidden size 32, two layers, small images: built in a second,
loaded by stock transformers classes and by mmstudio alike. No downloads: the
tokenizers are written from scratch (a letter-level byte BPE for GPT-2 and
CLIP, the Shapes World words for ViLT's BERT tokenizer, a SentencePiece
model trained on them for SigLIP).
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("a", "an", "the", "red", "green", "blue", "yellow", "circle", "square", "star", "triangle", "small",
         "large", "what", "color", "is", "how", "many", "there", "are", "left", "of", "right", "and", "objects",
         "photo", "this", "yes", "no", "one", "two", "three", "?")


def _spread(model, seed: int, scale: float = 0.3) -> None:
    """Wide random weights, so that different images give different outputs."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, param in model.named_parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def _write_bpe(folder: Path, vocab: dict[str, int]) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    return str(vocab_file), str(merges_file)


def build_vit_gpt2(folder: Path, seed: int = 0) -> Path:
    """A VisionEncoderDecoderModel (ViT encoder, GPT-2 decoder) like nlpconnect/vit-gpt2-image-captioning."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    # Lower-case letters, "?" and GPT-2's stand-in for a space ("Ġ"): captions read as letters and spaces.
    vocab = {c: i for i, c in enumerate([*_LETTERS, "?", "Ġ", "<|endoftext|>"])}
    tokenizer = GPT2Tokenizer(*_write_bpe(folder.parent / f"{folder.name}-bpe", vocab))
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8)
    decoder = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                         bos_token_id=end, eos_token_id=end, add_cross_attention=True, is_decoder=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = end
    config.pad_token_id = end
    config.eos_token_id = end
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    _spread(model, seed)
    model.generation_config.decoder_start_token_id = end
    model.generation_config.pad_token_id = end
    model.generation_config.eos_token_id = end
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def build_vilt(folder: Path, seed: int = 1) -> Path:
    """A ViltForQuestionAnswering like dandelin/vilt-b32-finetuned-vqa, with a small answer vocabulary."""
    import torch
    from transformers import BertTokenizer, ViltConfig, ViltForQuestionAnswering, ViltImageProcessor, ViltProcessor

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    answers = ["yes", "no", "red", "green", "blue", "yellow", "one", "two", "three", "circle"]
    config = ViltConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, image_size=64, patch_size=16, max_position_embeddings=40,
                        num_labels=len(answers), id2label=dict(enumerate(answers)),
                        label2id={a: i for i, a in enumerate(answers)})
    config.architectures = ["ViltForQuestionAnswering"]
    torch.manual_seed(seed)
    model = ViltForQuestionAnswering(config)
    _spread(model, seed, scale=1.0)  # with this seed, answers differ between images and questions
    model.save_pretrained(folder)
    image_processor = ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=16)
    ViltProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_clip(folder: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """A CLIPModel like openai/clip-vit-base-patch32, 32-pixel images on a 4 x 4 patch grid."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = [*_LETTERS, "?"]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(*_write_bpe(folder.parent / f"{folder.name}-bpe", {t: i for i, t in enumerate(tokens)}))
    text = dict(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=77, projection_dim=projection_dim,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8, projection_dim=projection_dim)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    config.architectures = ["CLIPModel"]
    torch.manual_seed(seed)
    model = CLIPModel(config)
    _spread(model, seed)
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _save_siglip(folder: Path, tokenizer, seed: int, *, pad: int, bos: int | None, eos: int,
                 naflex: bool = False) -> None:
    """A tiny SiglipModel (or NaFlex Siglip2Model) for `tokenizer`, saved with it and its image processor:
    32-pixel images on 4 x 4 patches (NaFlex: at most 16 patches of 8 pixels, at any aspect ratio)."""
    import torch
    import transformers

    text = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, pad_token_id=pad, bos_token_id=bos,
                eos_token_id=eos)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8,
                  **({"num_patches": 16} if naflex else {"image_size": 32}))
    prefix = "Siglip2" if naflex else "Siglip"
    config = getattr(transformers, f"{prefix}Config")(text_config=text, vision_config=vision)
    config.architectures = [f"{prefix}Model"]
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}Model")(config)
    _spread(model, seed)
    with torch.no_grad():  # a bias that keeps probabilities away from 0 and 1, as trained ones are
        model.logit_scale.fill_(1.0)
        model.logit_bias.fill_(-0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if naflex:
        transformers.Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    else:
        transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def build_siglip(folder: Path, seed: int = 0) -> Path:
    """A SiglipModel like google/siglip-base-patch16-224, with a SentencePiece tokenizer trained on WORDS."""
    import sentencepiece
    from transformers import SiglipTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f"{folder.name}-spm"
    work.mkdir(exist_ok=True)
    sentences = [" ".join(WORDS[i:i + 5]) for i in range(len(WORDS))] * 4
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=str(work / "spiece"),
                                             vocab_size=60, model_type="unigram", minloglevel=2,
                                             hard_vocab_limit=False)
    tokenizer = SiglipTokenizer(vocab_file=str(work / "spiece.model"))
    _save_siglip(folder, tokenizer, seed, pad=tokenizer.pad_token_id, bos=None, eos=tokenizer.eos_token_id)
    return folder


def build_siglip2(folder: Path, seed: int = 2) -> Path:
    """A SiglipModel with a Gemma tokenizer, as google/siglip2-base-patch16-224 (SigLIP 2 at a fixed resolution)."""
    from transformers import GemmaTokenizer

    _save_siglip(folder, GemmaTokenizer(vocab=_gemma_vocab(), merges=[]), seed, pad=0, bos=2, eos=1)
    return folder


def _gemma_vocab() -> dict[str, int]:
    """Gemma's special tokens and the letters: a text reads letter by letter, no merges needed."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "▁": 4}
    vocab.update({c: i + 5 for i, c in enumerate([*_LETTERS, "?"])})
    return vocab


def build_siglip2_naflex(folder: Path, seed: int = 4) -> Path:
    """A Siglip2Model like google/siglip2-base-patch16-naflex: at most 16 patches of 8 pixels, any aspect ratio."""
    from transformers import GemmaTokenizer

    _save_siglip(folder, GemmaTokenizer(vocab=_gemma_vocab(), merges=[]), seed, pad=0, bos=2, eos=1, naflex=True)
    return folder


BUILDERS = {"vit-gpt2": build_vit_gpt2, "vilt": build_vilt, "clip": build_clip, "siglip": build_siglip,
            "siglip2": build_siglip2, "siglip2-naflex": build_siglip2_naflex}
# A LLaVA (build_llava, below) is built by tests/test_vlm.py alone: a chat model answers every question.


def _word_tokenizer(words: list[str], **special):
    """A word-level tokenizer of `words` (split at spaces, joined with them), with the given special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=special["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, **special)


def _save_vlm(model_class, config, processor, folder: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    _spread(model, seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }} {% endfor %}</s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def build_llava(folder: Path, seed: int = 5) -> Path:
    """A LLaVA (CLIP vision tower, Llama language model, MLP projector), 32 px images in a 4 x 4 patch grid,
    a word-level tokenizer of the Shapes World words and a chat template in LLaVA 1.5's USER/ASSISTANT form."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    words, tokenizer, vision = _llava_parts()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    config = LlavaConfig(vision_config=vision, text_config=_tiny_llama(len(words)),
                         image_token_id=words.index("<image>"), vision_feature_select_strategy="default",
                         vision_feature_layer=-1)
    return _save_vlm(LlavaForConditionalGeneration, config, processor, folder, seed)


def _llava_parts():
    """(words, their tokenizer, a CLIP vision tower of 32 px in 8 px patches): what LLaVA and LLaVA-NeXT share."""
    from transformers import CLIPVisionConfig

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:", "describe", "image", ".",
             *[w for w in WORDS if w not in ("describe", "image")]]
    tokenizer = _word_tokenizer(words, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    return words, tokenizer, vision


def build_llava_next(folder: Path, seed: int = 8) -> Path:
    """A LLaVA-NeXT: the LLaVA above with "any resolution" tiles (32 x 64, 64 x 32 or 64 x 64 px, each a 4 x 4
    patch grid) after a 32 px base view, and a newline token closing each row of the tiles' grid."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    words, tokenizer, vision = _llava_parts()
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    images = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                     image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                                   num_additional_image_tokens=1)
    config = LlavaNextConfig(vision_config=vision, text_config=_tiny_llama(len(words)),
                             image_token_id=words.index("<image>"), image_grid_pinpoints=pinpoints,
                             vision_feature_select_strategy="default", vision_feature_layer=-1)
    return _save_vlm(LlavaNextForConditionalGeneration, config, processor, folder, seed)


def _tiny_llama(vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)


def build_paligemma(folder: Path, seed: int = 6) -> Path:
    """A PaliGemma (SigLIP vision tower, Gemma language model), 32 px images in a 4 x 4 patch grid, prompted by
    task prefixes ("caption en", "answer en ...") as the real ones are, with the Shapes World words."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    words = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>", "caption", "answer", "en", *WORDS]
    tokenizer = _word_tokenizer(words, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                extra_special_tokens={"image_token": "<image>"})
    processor = PaliGemmaProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32},
                                                                        image_seq_length=16), tokenizer=tokenizer)
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32),
        text_config=GemmaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                max_position_embeddings=4096, pad_token_id=0, eos_token_id=1, bos_token_id=2),
        image_token_id=words.index("<image>"), projection_dim=32)
    return _save_vlm(PaliGemmaForConditionalGeneration, config, processor, folder, seed)


IDEFICS3_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance> "
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def build_idefics3(folder: Path, seed: int = 7) -> Path:
    """An Idefics3 (SigLIP-style vision tower, pixel shuffle by 2, Llama): pictures split into 32 px tiles of a
    4 x 4 patch grid (2 x 2 image tokens each) plus a global view, as SmolVLM and Idefics3 split them."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    special = ["<pad>", "<s>", "</s>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>",
               "<end_of_utterance>", *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]]
    words = [*special, "User:", "Assistant:", "describe", "image", ".", *WORDS]
    tokenizer = _word_tokenizer(words, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                additional_special_tokens=special)
    images = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                    do_image_splitting=True)
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8),
        text_config=_tiny_llama(len(words)), image_token_id=words.index("<image>"), scale_factor=2)
    return _save_vlm(Idefics3ForConditionalGeneration, config, processor, folder, seed)


def build_smolvlm(folder: Path, seed: int = 16) -> Path:
    """A SmolVLM: Idefics3's layout (32 px tiles of 2 x 2 image tokens, a global view, the same markers) with
    SmolVLM's classes, its processor saved without a video processor (vlm.pictures_only) as torchvision is absent."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVisionConfig,
    )

    from mmstudio.models.vlm import pictures_only

    special = ["<pad>", "<s>", "</s>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>",
               "<end_of_utterance>", *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]]
    words = [*special, "User:", "Assistant:", "describe", "image", ".", *WORDS]
    tokenizer = _word_tokenizer(words, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                additional_special_tokens=special)
    images = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                      do_image_splitting=True)
    processor = pictures_only(SmolVLMProcessor)(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                                chat_template=IDEFICS3_TEMPLATE)
    config = SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, image_size=32, patch_size=8),
        text_config=_tiny_llama(len(words)), image_token_id=words.index("<image>"), scale_factor=2)
    return _save_vlm(SmolVLMForConditionalGeneration, config, processor, folder, seed)


QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> {% else %}{{ c['text'] }} "
    "{% endif %}{% endfor %}<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")


def _qwen_parts(processor_name: str):
    """(words, a processor as Qwen's: <|image_pad|> made one token per 2 x 2 block of 8 px patches, pictures of
    16 x 16 to 64 x 64 px at their own aspect ratio), saved without a video processor (vlm.pictures_only)."""
    import transformers

    from mmstudio.models.vlm import pictures_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
               "<|video_pad|>"]
    words = [*special, "<unk>", "user", "assistant", "describe", "image", ".", *WORDS]
    tokenizer = _word_tokenizer(words, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>",
                                additional_special_tokens=special[1:])
    images = transformers.Qwen2VLImageProcessor(patch_size=8, merge_size=2, temporal_patch_size=2,
                                                min_pixels=16 * 16, max_pixels=64 * 64)
    processor = pictures_only(getattr(transformers, processor_name))(image_processor=images, tokenizer=tokenizer,
                                                                       chat_template=QWEN_TEMPLATE)
    ids = {f"{name}_token_id": words.index(f"<|{token}|>") for name, token in
           [("image", "image_pad"), ("video", "video_pad"), ("vision_start", "vision_start"),
            ("vision_end", "vision_end")]}
    text = dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0,
                bos_token_id=None, eos_token_id=words.index("<|im_end|>"),
                # M-RoPE: the head's 8 rotary frequencies split between time, height and width
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0})
    return processor, ids, text


def build_qwen2_vl(folder: Path, seed: int = 9) -> Path:
    """A Qwen2-VL (its ViT with 2D rotary positions, a 2 x 2 patch merger, Qwen2 with M-RoPE) at any resolution."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    processor, ids, text = _qwen_parts("Qwen2VLProcessor")
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, patch_size=8, spatial_merge_size=2,
                  temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    return _save_vlm(Qwen2VLForConditionalGeneration, config, processor, folder, seed)


def build_qwen2_5_vl(folder: Path, seed: int = 10) -> Path:
    """A Qwen2.5-VL: Qwen2-VL with windowed attention in its ViT (one full-attention block of the two)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    processor, ids, text = _qwen_parts("Qwen2_5_VLProcessor")
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=32, num_heads=2, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=32, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    return _save_vlm(Qwen2_5_VLForConditionalGeneration, config, processor, folder, seed)


FLORENCE2_PROMPTS = ("What does the image describe?", "Describe in detail what is shown in the image.",
                     "Describe with a paragraph what is shown in the image.")


def build_florence2(folder: Path, seed: int = 18) -> Path:
    """A Florence-2 (DaViT vision tower, BART encoder-decoder), 32 px pictures on a 4 x 4 grid (strides 4 and 2)
    after one pooled token, prompted by task tokens that its processor writes out as questions (the words of
    FLORENCE2_PROMPTS are in its vocabulary)."""
    from transformers import (
        BartConfig,
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    special = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
    prompt_words = dict.fromkeys(w for prompt in FLORENCE2_PROMPTS for w in prompt.split())
    # The task tokens are words too: the real byte-level BPE knows every prompt (mmstudio checks prompts' words).
    tasks = ["<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"]
    words = [*special, *dict.fromkeys([*prompt_words, *WORDS]), *tasks]
    tokenizer = _word_tokenizer(words, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                extra_special_tokens={"image_token": "<image>"})
    images = CLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False, image_seq_length=17)
    processor = Florence2Processor(image_processor=images, tokenizer=tokenizer)
    vision = Florence2VisionConfig(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
                                   patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[2, 2],
                                   num_groups=[2, 2], window_size=2, projection_dim=32, drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(words), d_model=32, encoder_layers=2, decoder_layers=2,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                      max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                      decoder_start_token_id=2, forced_bos_token_id=0)
    config = Florence2Config(vision_config=vision, text_config=text, image_token_id=words.index("<image>"))
    return _save_vlm(Florence2ForConditionalGeneration, config, processor, folder, seed)
