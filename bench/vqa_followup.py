"""Follow-up questions on one image: mmstudio's Engine.ask (vision features cached) against plain transformers.

    python bench/vqa_followup.py [--quick] [--device cpu|cuda] [--dtype fp32|fp16|bf16]
                                 [--threads N] [--repeats R] [--models base,builtin]

A base-size BLIP VQA checkpoint with random weights (bench/base_size.py builds
it once; add `builtin` to --models for the built-in VQA model too). On each
of R new Shapes World scenes, three questions are asked one after the other,
each as its own call: mmstudio's side is `Engine().ask(image, [question])`, so
the second and third questions reuse the vision features the adapter cached
for the first; the plain side is what the transformers documentation shows,
per question: `processor(images=image, text=question, return_tensors="pt")`,
`model.generate(**inputs, max_new_tokens=3)`, `processor.decode(out[0],
skip_special_tokens=True)`. Both decode greedily to answers of up to 3 tokens,
as VQA answers are (random weights seldom stop early, so both generate 3).

Prints the median time of the first question and of a follow-up question
(second and third pooled) on each side and their ratios; the issue's goal is
>= 3x per follow-up question.
"""

from __future__ import annotations

import statistics

import side_by_side as sbs

MAX_NEW_TOKENS = 3
QUESTIONS_PER_IMAGE = 3
GOAL = 3.0


def scenes_with_questions(count: int, seed: int = 1):
    import numpy as np

    from mmstudio.world import questions, render_scene, sample_scene

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        scene = sample_scene(rng)
        asked = [qa.question for qa in questions(scene, rng)]
        while len(asked) < QUESTIONS_PER_IMAGE:
            asked.append("how many objects are there?")
        out.append((render_scene(scene), asked[:QUESTIONS_PER_IMAGE]))
    return out


def measure(case: sbs.Case, args) -> dict:
    from mmstudio.models.base import GenerationOptions, Task

    engine = sbs.engine(args)
    adapter = engine.adapter(Task.VQA, case.name)
    processor, model = sbs.plain("BlipForQuestionAnswering", adapter.info.path, args)
    generation = GenerationOptions(max_new_tokens=MAX_NEW_TOKENS)

    def ours(image, question):
        return engine.ask(image, [question], model=case.name, generation=generation)[0].answer

    def plain(image, question):
        inputs = sbs.to_device(processor(images=image, text=question, return_tensors="pt"), args)
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
        return processor.decode(out[0], skip_special_tokens=True)

    sides = {"plain": plain, "mmstudio": ours}
    work = scenes_with_questions(case.repeats + 1)
    warm_image, warm_questions = work.pop()
    for side in sides.values():  # warm-up: first-call allocations, lazy inits
        side(warm_image, warm_questions[0]), side(warm_image, warm_questions[1])
    first = {n: [] for n in sides}
    followup = {n: [] for n in sides}
    answers = {n: [] for n in sides}
    for r, (image, asked) in enumerate(work):
        for name_ in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            sbs.forget(adapter)  # the image is new to mmstudio's side too
            for q, question in enumerate(asked):
                run = sides[name_]
                wall, cpu, answer = sbs.timed(lambda run=run, image=image, question=question: run(image, question),
                                              args.device)
                (first if q == 0 else followup)[name_].append((wall, cpu))
                answers[name_].append(answer)
    sbs.forget(adapter)

    def median(samples, i):
        return statistics.median(s[i] for s in samples)

    return dict(params=adapter.info.parameters,
                first={n: median(first[n], 0) for n in sides}, first_cpu={n: median(first[n], 1) for n in sides},
                follow={n: median(followup[n], 0) for n in sides},
                follow_cpu={n: median(followup[n], 1) for n in sides},
                same=answers["plain"] == answers["mmstudio"], example=answers["mmstudio"][:3], questions=work[0][1],
                tokens=sbs.token_range(processor.tokenizer, answers["plain"]))


def main() -> None:
    parser = sbs.parser(__doc__)
    sbs.add_models(parser, default="base")
    args = parser.parse_args()
    sbs.setup(args)

    cases = sbs.cases(args, "vqa", repeats={"builtin": (3, 10), "base": (2, 5)})
    sbs.header(args, "VQA follow-up questions")
    results = [(case, measure(case, args)) for case in cases]

    rows = []
    for case, r in results:
        for kind, wall, cpu, goal in (("first", r["first"], r["first_cpu"], "-"),
                                      ("follow-up", r["follow"], r["follow_cpu"], f">= {GOAL}x")):
            rows.append(sbs.Row(case, r["params"], [str(case.repeats), kind], f"{wall['plain'] * 1e3:.1f}",
                                f"{wall['mmstudio'] * 1e3:.1f}", wall["plain"] / wall["mmstudio"],
                                cpu["plain"] / cpu["mmstudio"], goal, r["same"], r["tokens"]))
    sbs.comparison(args.device, ["images", "question"], "ms", "answer tokens", rows)
    for case, r in results:
        print(f"  {case.label} example: {r['questions']} -> {r['example']}")
    parts = []
    for case, r in results:
        ratio = r["follow"]["plain"] / r["follow"]["mmstudio"]
        parts.append(f"{ratio:.2f}x per follow-up question on {case.label} (goal {GOAL}x, "
                     f"{'met' if ratio >= GOAL else 'NOT met'}), first question "
                     f"{r['first']['plain'] / r['first']['mmstudio']:.2f}x")
    print("summary: mmstudio Engine.ask vs plain transformers processor + generate: " + "; ".join(parts))


if __name__ == "__main__":
    main()
