"""The reliability table of issue 16: hostile inputs tried per area, and how many the code holds.

    python bench/hostile_inputs.py [--fast]

Runs the hostile-input tests (tests/test_hostile_models.py, tests/test_hostile_training.py,
tests/test_dataset_reader.py) through pytest, one attempt per test case (a parametrized case
is one attempt), and prints a table per area: attempts, held (passed), failed, skipped. An
attempt "holds" when the input gets a clear, typed error (or is read correctly) and nothing
is lost; the tests check the message and that no traceback reaches the user. --fast leaves
out the slow subprocess cases (the remote-code check with "y" on standard input).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("tests/test_hostile_models.py", "tests/test_hostile_training.py", "tests/test_dataset_reader.py")

# (area, test-name prefixes); the first area whose prefix matches a test takes it.
AREAS = (
    ("model folder runs its own code (16.1)", ("test_a_model_folders_own_code",)),
    ("missing or unexpected weights (16.2)", ("test_weights_that_do_not_match", "test_the_cli_refuses_missing",
                                              "test_a_training_base_with_missing")),
    ("memory from a config (16.3)", ("test_an_absurd_",)),
    ("memory from data (16.3)", ("test_vocabulary_growth", "test_rows_of_one_image", "test_over_long_line",
                                 "test_question_or_answer_over", "test_negative_over")),
    ("malformed configs in the HF cache (16.4)", ("test_any_architectures", "test_a_string_architecture",
                                                  "test_a_bad_folder_in_the_hf_cache", "test_the_model_dialog")),
    ("damaged checkpoints and resume (16.5)", ("test_a_damaged_checkpoint", "test_a_checkpoint_counts",
                                               "test_resume", "test_resuming", "test_a_finished_run")),
    ("full, read-only and wrong disks (16.6)", ("test_out_that_is", "test_read_only", "test_a_full_disk")),
    ("arguments and environment (16.7)", ("test_bad_arguments", "test_the_argparse", "test_bad_environment",
                                          "test_an_unknown_device", "test_train_config_is_checked",
                                          "test_a_generic_mmstudio_error", "test_ask_input_from_dev_zero",
                                          "test_input_")),
    ("model hints and token ids (16.8)", ("test_a_bad_hints", "test_good_hints", "test_special_token_ids")),
    ("file permissions (16.9)", ("test_every_file_a_run_writes", "test_files_follow_the_umask")),
    ("dataset rows: one reader for every path (17)", ("test_",)),
)


def area_of(name: str) -> str:
    return next(area for area, prefixes in AREAS if name.startswith(prefixes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="leave out the slow subprocess cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmstudio-hostile-") as work:
        report = Path(work) / "report.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *FILES]
        if args.fast:
            command += ["-m", "not slow"]
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        cases = ET.parse(report).getroot().iter("testcase")
        counts: dict[str, Counter] = {area: Counter() for area, _ in AREAS}
        failed_names = []
        for case in cases:
            name = case.get("name", "")
            outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None
                       else "skipped" if case.find("skipped") is not None else "held")
            counts[area_of(name)][outcome] += 1
            if outcome == "failed":
                failed_names.append(f"{case.get('classname')}::{name}")
    print("| area | attempts | held | failed | skipped |")
    print("|---|---|---|---|---|")
    total = Counter()
    for area, _ in AREAS:
        c = counts[area]
        attempts = sum(c.values())
        if attempts:
            print(f"| {area} | {attempts} | {c['held']} | {c['failed']} | {c['skipped']} |")
            total.update(c)
    print(f"| **all** | {sum(total.values())} | {total['held']} | {total['failed']} | {total['skipped']} |")
    for name in failed_names:
        print(f"FAILED {name}")
    return 1 if failed_names else 0


if __name__ == "__main__":
    sys.exit(main())
