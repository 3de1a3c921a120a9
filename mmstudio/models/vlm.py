"""Vision-language models (image-text-to-text): captions and answers through a chat template or a task prompt,
with each generated word's attention on the image.

A checkpoint whose `config.json` is one of LAYOUTS loads through transformers' `AutoModelForImageTextToText`
and `AutoProcessor` (never code from the folder). A caption is the answer to an instruction
(`GenerationOptions.prompt`, default "Describe this image."); a question is one user turn with the image.
Generation keeps the model's fast attention; a word's map is computed after it, on request, by one
teacher-forced pass with eager attention over the whole sequence: the attention of the position that
produced the word onto the positions of the image's tokens, every layer and head kept, mapped back to the
vision tower's patch grid by the architecture's layout (`image_cells`).

Layouts mapped so far (vlm_layouts.py):
  idefics3, smolvlm
             tiles of the picture (each after its <row_R_col_C> marker) and a global view, each tile a
             pixel-shuffled square grid: the tiles side by side make the map (idefics3_cells). SmolVLM's
             processor declares a video processor too (loaded as `pictures_only`, as Qwen2-VL's).
  llava      one fixed grid: the vision tower's patches without [CLS] (vision_feature_select_strategy
             "default"; "full" keeps [CLS] first), one image token each, in row-major order.
  llava_next a base view, then the high-resolution tiles as one grid with the padding cut away, each row
             ended by a newline token: the map is that grid (llava_next_cells).
  paligemma  one fixed grid: SigLIP's patches (no [CLS]), one image token each, row-major; no chat
             template: prompted by task prefixes ("caption en", "answer en QUESTION"), one turn.
  qwen2_vl, qwen2_5_vl
             the picture at its own resolution, each 2 x 2 block of patches one token, row-major over the
             processor's image_grid_thw (merged_grid_cells). The language model places them by M-RoPE: the
             teacher-forced pass gets the processor's mm_token_type_ids (the reply marked as text) and
             image_grid_thw, so its positions are generate's. Their processors declare a video processor,
             which transformers builds only with torchvision; without it they load as `pictures_only`.
  florence2  an encoder-decoder (DaViT, BART) prompted by task tokens ("<CAPTION>", "<DETAILED_CAPTION>";
             a question as it is), one turn. The encoder reads one token pooled over DaViT's feature map, the
             map's cells row-major, then the prompt (florence2_cells); a word's map is the decoder's
             cross-attention from the position that wrote it onto those cells.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack
from mmstudio.errors import ModelLoadError
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import (
    AdapterFactory,
    AnswerResult,
    CancelCheck,
    CaptionResult,
    GenerationOptions,
    Task,
    never_cancelled,
)
from mmstudio.models.common import cut_at
from mmstudio.models.generation import seeded
from mmstudio.models.hints import read_hints, read_turn_limit, valid_hints
from mmstudio.models.in_domain import read_in_domain
from mmstudio.models.loading import read_config
from mmstudio.models.vlm_layouts import (
    davit_grid,
    florence2_cells,
    idefics3_cells,
    image_token_grid,
    llava_next_cells,
    merged_grid_cells,
)

DEFAULT_INSTRUCTION = "Describe this image."
# Models prompted by task prefixes instead of a conversation (no chat template): (caption prompt, question form,
# what goes first: PaliGemma's processor wants its image token written, Florence-2's writes its own).
PROMPT_FORMS = {"paligemma": ("caption en", "answer en {}", "<image>"), "florence2": ("<CAPTION>", "{}", "")}
Stream = Callable[[str], None]  # the reply so far, after each generated token
LAYOUTS = frozenset({"llava", "llava_next", "paligemma", "idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl",
                     "florence2"})
# Processors that declare a video processor too, which transformers builds only with torchvision installed.
# Pictures never go through it: without torchvision they load as `pictures_only` processors.
VIDEO_BOUND = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor", "smolvlm": "SmolVLMProcessor"}


def accepts(config: dict) -> bool:
    return config.get("model_type") in LAYOUTS


def tasks_of(config: dict) -> frozenset[Task]:
    return frozenset({Task.CAPTION, Task.VQA}) if accepts(config) else frozenset()


def pictures_only(processor_class):
    """`processor_class` without its video processor: the same class (name, saving, chat template, image tokens)
    whose constructor takes the image processor and the tokenizer alone. transformers finds a processor's parts
    from its constructor's arguments, so the video processor is neither loaded nor checked."""
    from transformers import ProcessorMixin

    stock = inspect.signature(processor_class.__init__)
    named = [p for name, p in stock.parameters.items() if name != "video_processor"]

    class PicturesOnly(processor_class):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        @staticmethod
        def validate_init_kwargs(processor_config, valid_kwargs):
            # Loading passes on the saved settings this constructor's code names: the stock one's are ours too.
            return processor_class.validate_init_kwargs(processor_config, [*valid_kwargs, *(p.name for p in named)])

        def apply_chat_template(self, conversation, chat_template=None, **kwargs):
            # SmolVLM's own reads its video processor's frame settings before it writes any conversation; a
            # picture has no frames, so the template is applied as every other processor applies it.
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    PicturesOnly.__name__ = PicturesOnly.__qualname__ = processor_class.__name__  # saved as the stock class
    # Saving keeps the settings the constructor names (SmolVLM's image_seq_len): the stock one's, less video.
    PicturesOnly.__init__.__signature__ = stock.replace(parameters=named)
    return PicturesOnly


def load_processor(path):
    """The checkpoint's processor as transformers loads it (AutoProcessor); a Qwen2-VL's without its video half
    where torchvision is missing."""
    import transformers
    from transformers.utils import is_torchvision_available

    kind = read_config(Path(path)).get("model_type")  # capped and checked, as every load reads it
    if kind in VIDEO_BOUND and not is_torchvision_available():
        return pictures_only(getattr(transformers, VIDEO_BOUND[kind])).from_pretrained(path, trust_remote_code=False)
    return transformers.AutoProcessor.from_pretrained(path, trust_remote_code=False)


def _processor(path) -> tuple:
    """(its tokenizer, the processor): what turns a conversation with an image into the model's inputs."""
    processor = load_processor(path)
    prompted = type(processor).__name__ in ("PaliGemmaProcessor", "Florence2Processor")  # PROMPT_FORMS
    if getattr(processor, "chat_template", None) is None and not prompted:
        raise ModelLoadError(f"{path}: the processor has no chat template, so no conversation can be written")
    return processor.tokenizer, processor


class ImageTextToTextAdapter(AdapterBase):
    family: ClassVar[str] = "vlm"
    streams: ClassVar[bool] = True  # answers take `stream` and `stop` (Engine.ask passes them)
    TASKS = frozenset({Task.CAPTION, Task.VQA})
    kind = "a vision-language chat model"
    loads = "AutoModelForImageTextToText"  # by its concrete class: architecture_to_load
    checkpoint_kind = "image-text-to-text"
    load_processing = staticmethod(_processor)

    @classmethod
    def architecture_to_load(cls, config: dict) -> str | None:
        """The class `AutoModelForImageTextToText` would pick (named, so the memory check can size it first)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(config.get("model_type", "")) if accepts(config) else None

    def __init__(self, model, tokenizer, processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 64):
        self.processor = processor
        self.image_token_id = getattr(model.config, "image_token_id", None) or getattr(
            model.config, "image_token_index", None)
        if self.image_token_id is None:
            raise ModelLoadError(f"{path}: the config names no image token (image_token_id)")
        # Idefics3's and SmolVLM's tile markers, by token id: where each tile's image tokens begin.
        self.tile_markers = {tokenizer.convert_tokens_to_ids(f"<row_{r}_col_{c}>"): (r, c)
                             for r in range(1, 7) for c in range(1, 7)}
        for missing in (tokenizer.unk_token_id, None):  # a tokenizer without them: no markers
            self.tile_markers.pop(missing, None)
        self.global_marker = tokenizer.convert_tokens_to_ids("<global-img>")
        # A chat template writes conversations; a model without one is prompted by task prefixes.
        self.forms = None if getattr(processor, "chat_template", None) else PROMPT_FORMS[model.config.model_type]
        super().__init__(model, tokenizer, processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        # The layer whose maps point best, measured by the recipe for the built-in chat model (mmstudio.json).
        self.hints = valid_hints(read_hints(path), len(self.attention_layers()), path)
        # A small model trained on short conversations loses its way in longer ones (the built-in chat model,
        # after seven turns, named a shape for a colour): it reads the latest turns it was trained to hold.
        self.turn_limit = read_turn_limit(path)
        generation = model.generation_config
        eos = generation.eos_token_id if generation.eos_token_id is not None else tokenizer.eos_token_id
        # One sequence at a time: nothing is padded, so only the end tokens end a reply (a small model may well
        # write its pad token as a word; generate goes on past it, and so does the reply).
        self.stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        if self.world_checkable():  # the built-in chat model ships a check, as the BLIP models do
            self.in_domain_check = read_in_domain(path, 3 * model.config.vision_config.hidden_size)

    def architecture(self) -> str:
        config = self.model.config
        return (f"{type(self.model).__name__} ({config.vision_config.model_type} + "
                f"{config.text_config.model_type})")

    def image_geometry(self) -> tuple[int, int]:
        """(image side, side of the picture one image token covers). A model that takes each picture at its own
        resolution (Qwen2-VL: merge x merge patches a token) has no one side: the largest square it takes whole."""
        vision = self.model.config.vision_config
        if self.model.config.model_type == "florence2":  # DaViT: a picture of one size, strided convolutions
            side = self.processor.image_processor.size["height"]
            return side, side // self.davit_grid()[0]
        cell = vision.patch_size * getattr(vision, "spatial_merge_size", 1)
        if getattr(vision, "image_size", None):
            return vision.image_size, vision.patch_size
        images = self.processor.image_processor  # Qwen's size: {"longest_edge": the most pixels, not a side}
        most = getattr(images, "max_pixels", None) or getattr(images.size, "longest_edge", None) or cell * cell
        return max(cell, int(most ** 0.5 // cell) * cell), cell

    def world_checkable(self) -> bool:
        """LLaVA on a CLIP tower: its tower's output is a CLS token, then the patches."""
        config = self.model.config
        return config.model_type == "llava" and config.vision_config.model_type == "clip_vision_model"

    def image_embeds(self, images: Sequence[Image.Image], keys: Sequence[str] | None = None):
        """(B, 1 + patches, D) the vision tower's output (what the in-domain check measures; generate makes
        its own pass, through the projector)."""
        tower = self.model.model.vision_tower
        return self.cached_vision(images, lambda pixels: tower(pixel_values=pixels).last_hidden_state, keys)

    def pixel_values(self, images: Sequence[Image.Image]):
        pixels = self.processor.image_processor(images=[image.convert("RGB") for image in images],
                                                return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    # ------------------------------------------------------------- tasks

    def caption(
        self,
        images: Sequence[Image.Image],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
        cancel: CancelCheck = never_cancelled,
        stream: Callable[[int, str], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[CaptionResult]:
        """`stream(image index, caption so far)` after each token; `stop()` true ends the caption being written."""
        default = self.forms[0] if self.forms else DEFAULT_INSTRUCTION
        instruction = (generation.prompt or "").strip() or default
        in_domain = self.in_domain_of(images)  # one vision pass for the batch (no check: nothing computed)
        results = []
        for index, image in enumerate(images):
            cancel()
            live = (lambda text, i=index: stream(i, text)) if stream is not None else None
            text, tokens, stack = self.reply(image, [], instruction, attention=attention, generation=generation,
                                             asking=False, stream=live, stop=stop)
            results.append(CaptionResult(caption=text, tokens=tokens, attention=stack,
                                         in_domain=in_domain[index]))
        return results

    def answer_questions(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
        stream: Stream | None = None,
        stop: Callable[[], bool] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> list[AnswerResult]:
        """Each question as the next user turn after `history` ((question, answer) turns about the image);
        `stream(text so far)` after each generated token; `stop()` true ends the generation at once, keeping
        what it wrote (the Ask panel's Stop)."""
        answers = []
        in_domain = self.in_domain_of([image])[0]
        for question in questions:
            text, tokens, stack = self.reply(image, history, question, attention=attention, generation=generation,
                                             stream=stream, stop=stop)
            one = None
            if stack is not None and len(stack.tokens):  # the answer's evidence: its words' maps together
                one = AttentionStack((text,), stack.weights.mean(axis=0, keepdims=True), stack.layers,
                                     stack.default_layer)
            answers.append(AnswerResult(question=question, answer=text, answer_attention=one, answer_tokens=tokens,
                                        answer_token_attention=stack, in_domain=in_domain))
        return answers

    # ----------------------------------------------------- a conversation

    def messages(self, history: Sequence[tuple[str, str]], text: str) -> list[dict]:
        """The conversation: the image with the first user turn, earlier (question, reply) turns, `text` last."""
        turns = [*history, (text, None)]
        out = []
        for i, (asked, replied) in enumerate(turns):
            content = ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": asked}]
            out.append({"role": "user", "content": content})
            if replied is not None:
                out.append({"role": "assistant", "content": [{"type": "text", "text": replied}]})
        return out

    def inputs(self, image: Image.Image, history: Sequence[tuple[str, str]], text: str, asking: bool = True):
        """The model's inputs for `text` (a question, or with `asking` False a caption instruction) after
        `history`: through the chat template, or for a prompted model (PaliGemma) its task prefix alone, the
        processor putting the image's tokens first (a prompted model holds no conversation)."""
        if self.forms is None:
            prompt = self.processor.apply_chat_template(self.messages(history, text), add_generation_prompt=True)
        else:
            prompt = self.forms[2] + (self.forms[1].format(text) if asking else text)
        batch = self.processor(images=[image.convert("RGB")], text=[prompt], return_tensors="pt")
        batch.pop("labels", None)  # a training target the processor adds for some models; generate takes none
        batch = batch.to(self.device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch

    def reply(self, image: Image.Image, history: Sequence[tuple[str, str]], text: str, *, attention: bool,
              generation: GenerationOptions, stream: Stream | None = None, stop: Callable[[], bool] | None = None,
              asking: bool = True) -> tuple[str, tuple[str, ...], AttentionStack | None]:
        """(the model's reply, its words, each word's map or None) to `text` after `history` about `image`."""
        from transformers import StoppingCriteriaList

        torch = self._torch
        batch = self.inputs(image, latest_turns(history, self.turn_limit), text, asking)
        config = self.generation_config(generation)
        start = self.reply_start(batch)
        extra = {}
        if stream is not None and (config.num_beams or 1) == 1:  # beams have no one text so far to show
            extra["streamer"] = _TextStream(self.tokenizer, self.stops, stream)
        if stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([_StopWhen(stop)])
        with torch.inference_mode():
            seeded(torch, generation, config)
            sequences = self.model.generate(**batch, generation_config=config, **extra)
        new = cut_at(sequences[0, start:].tolist(), self.stops)
        # Words are what the reply shows: special tokens (all_special_ids leaves out a processor's own, such as
        # Idefics3's <row_R_col_C>) decode to nothing there, so they get no map either.
        special = set(self.tokenizer.all_special_ids)
        words = [i for i, t in enumerate(new)
                 if t not in special and self.tokenizer.decode([t], skip_special_tokens=True).strip()]
        tokens = tuple(self.tokenizer.decode([new[i]]).strip() or "␣" for i in words)
        reply = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        stopped = stop is not None and stop()  # a stopped reply is not looked into: it is being dropped
        layer = self.hints.get("vqa_layer" if asking else "caption_layer", "mean")
        stack = self.word_maps(batch, new, words, tokens, layer) if attention and words and not stopped else None
        return reply, tokens, stack

    def reply_start(self, batch) -> int:
        """Where the reply begins in what generate returns: after the prompt, or for an encoder-decoder
        (Florence-2) after the decoder's start token."""
        return 1 if self.model.config.is_encoder_decoder else batch["input_ids"].shape[1]

    def attention_layers(self) -> list:
        """The attention whose weights make the maps: the language model's self-attention, or for an
        encoder-decoder its decoder's cross-attention onto the encoder's input (the image's tokens, the prompt's)."""
        decoder, kind = self.model.get_decoder(), "self_attn"
        if self.model.config.is_encoder_decoder:
            decoder, kind = getattr(decoder, "decoder", decoder), "encoder_attn"  # (BART's names)
        return [module for name, module in decoder.named_modules() if name.endswith(kind)]

    def teacher_forced(self, batch, new: list[int]) -> dict:
        """The model's inputs for the prompt with the reply `new` after it, as generate saw them."""
        torch = self._torch
        reply = torch.tensor([new], device=batch["input_ids"].device)
        if self.model.config.is_encoder_decoder:  # the prompt stays the encoder's; the decoder reads the reply
            begin = torch.full_like(reply[:, :1], self.model.generation_config.decoder_start_token_id)
            return {**batch, "decoder_input_ids": torch.cat([begin, reply], 1)}
        ids = torch.cat([batch["input_ids"], reply], dim=1)
        per_token = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
        extra = {k: v for k, v in batch.items() if k not in per_token}
        if "token_type_ids" in batch:  # PaliGemma: the prefix (image and prompt) attends both ways
            extra["token_type_ids"] = torch.cat([batch["token_type_ids"], torch.ones_like(reply)], 1)
        if "mm_token_type_ids" in batch:  # Qwen2-VL: M-RoPE's positions follow the image tokens; the reply is text
            extra["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(reply)], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra}

    def word_maps(self, batch, new: list[int], words: list[int], tokens: tuple[str, ...],
                  default_layer: int | str = "mean") -> AttentionStack | None:
        """Each generated word's attention onto the image's patches: one teacher-forced pass, eager attention
        (the fused kernels return no weights), the query at the position before the word's."""
        torch = self._torch
        if self.image_token_id in new:  # only an untrained model writes it; passed back, it would take the picture's
            return None
        sizes, grids = batch.get("image_sizes"), batch.get("image_grid_thw")
        try:
            cells = self.image_cells(batch["input_ids"][0].tolist(), sizes[0].tolist() if sizes is not None else None,
                                     grid_thw=grids[0].tolist() if grids is not None else None)
        except ValueError:
            return None  # a layout this family does not map yet: the reply stands, without maps
        rows, cols = cells.shape
        start = self.reply_start(batch)  # the reply's words in the teacher-forced (decoder's) sequence
        device = batch["input_ids"].device
        queries = torch.tensor([start + i - 1 for i in words], device=device)
        patches = torch.as_tensor(cells.ravel(), device=device)  # (encoder input's, for an encoder-decoder)
        # Each layer's weights are cut to the rows and columns wanted as the layer returns them and then let
        # go: memory holds one layer's attention at a time, not every layer's (32 layers of 2,500 tokens
        # would be 25 GB in float32).
        layers = self.attention_layers()
        per_layer: list[np.ndarray | None] = [None] * len(layers)

        def keeper(index: int):
            def hook(_module, _args, output):
                if isinstance(output, tuple) and len(output) > 1 and output[1] is not None:
                    per_layer[index] = output[1][0][:, queries][:, :, patches].float().cpu().numpy()
                    return (output[0], None, *output[2:])
                return output
            return hook

        handles = [layer.register_forward_hook(keeper(i)) for i, layer in enumerate(layers)]
        before = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                self.model(**self.teacher_forced(batch, new))
        finally:
            self.model.set_attn_implementation(before)
            for handle in handles:
                handle.remove()
        if not layers or any(weights is None for weights in per_layer):
            return None  # a language model whose attention layers return no weights: the reply stands
        weights = np.stack([np.moveaxis(w, 1, 0) for w in per_layer], axis=1)  # (T, L, H, rows * cols)
        grid = weights.reshape(*weights.shape[:3], rows, cols).astype(np.float32)
        return AttentionStack(tokens, grid, tuple(range(len(per_layer))), default_layer)

    def image_cells(self, input_ids: list[int], image_size: list[int] | None = None, *,
                    grid_thw: list[int] | None = None) -> np.ndarray:
        """(rows, cols) positions in `input_ids` of the image tokens, laid out as the picture they show (the
        architecture's layout, vlm_layouts.py; `image_size`: the picture's (height, width) and `grid_thw` its
        patch grid, where the processor reports them); ValueError for a layout not mapped."""
        ids = np.asarray(input_ids)
        positions = np.nonzero(ids == self.image_token_id)[0]
        kind = self.model.config.model_type
        if kind in ("idefics3", "smolvlm"):  # SmolVLM's processor writes Idefics3's markers
            return idefics3_cells(ids, positions, self.tile_markers, self.global_marker)
        if kind in ("qwen2_vl", "qwen2_5_vl") and grid_thw is not None:
            return merged_grid_cells(positions, grid_thw, self.model.config.vision_config.spatial_merge_size)
        if kind == "llava_next" and image_size is not None:
            return llava_next_cells(self.model.config, positions, image_size)
        if kind == "florence2":
            return florence2_cells(positions, *self.davit_grid())
        skip, rows, cols = image_token_grid(self.model.config, len(positions))
        return positions[skip:].reshape(rows, cols)

    def davit_grid(self) -> tuple[int, int]:
        """Florence-2: the (rows, cols) feature map of the picture size its processor resizes every picture to."""
        size = self.processor.image_processor.size
        return davit_grid(self.model.config.vision_config, size["height"], size["width"])


def latest_turns(history: Sequence[tuple[str, str]], limit: int | None) -> list[tuple[str, str]]:
    """The earlier turns a model holding `limit` turns in all reads before the new one (None: every turn)."""
    if limit is None:
        return list(history)
    return list(history)[max(0, len(history) - (limit - 1)):]


class _TextStream:
    """A transformers streamer: the reply so far after each new token (the first `put` is the prompt)."""

    def __init__(self, tokenizer, stops: set[int], stream: Stream):
        self.tokenizer, self.stops, self.stream = tokenizer, stops, stream
        self.prompt_seen = False
        self.ids: list[int] = []

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.flatten().tolist())
        text = self.tokenizer.decode(cut_at(self.ids, self.stops), skip_special_tokens=True).strip()
        if text:  # a special token alone says nothing yet
            self.stream(text)

    def end(self) -> None:
        pass


class _StopWhen:
    """A stopping criterion: every sequence is done once `stop()` says so (checked after each token)."""

    def __init__(self, stop: Callable[[], bool]):
        self.stop = stop

    def __call__(self, input_ids, scores, **_kwargs):
        import torch

        return torch.full((input_ids.shape[0],), bool(self.stop()), dtype=torch.bool, device=input_ids.device)


FACTORY = AdapterFactory(family="vlm", accepts=accepts, load=ImageTextToTextAdapter.load, tasks_of=tasks_of,
                         notes="image-text-to-text models (LLaVA, LLaVA-NeXT, PaliGemma, Idefics3, SmolVLM, "
                               "Qwen2-VL, Qwen2.5-VL, Florence-2): caption, vqa")
