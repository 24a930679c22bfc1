"""lm-eval's own command line, with the "lit-llm" model registered and the kit's tasks on the include path.

    python -m lit_llm.eval --model lit-llm --model_args ckpt_path=runs/demo,batch_size=16 \
        --tasks mmlu_anatomy,gsm8k --limit 10 --metadata '{"data_dir": "../shared/data"}'

Every lm-eval option works (`python -m lit_llm.eval run --help`); `--include_path` defaults to
`lit_llm/eval/tasks`, whose tasks take the place of lm-eval's stock ones of the same name.
"""

from __future__ import annotations

import sys


def main() -> None:
    import lit_llm.eval.wrapper  # noqa: F401  (registers "lit-llm")
    from lit_llm.eval.tasks import TASK_DIR

    args = sys.argv[1:]
    if args and args[0] not in ("-h", "--help", "ls", "validate") and "--include_path" not in args:
        sys.argv += ["--include_path", str(TASK_DIR)]
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
