"""What the Python helpers fedge-export runs have in common.

export_onnx.py and quantize_int8.py speak one protocol with fedge-export
(common/ml/python_tool.h): a last line "ok ..." and exit 0, or "error: ..."
on standard error and exit 1. They write their output atomically.
"""

import os
import sys


def write_atomically(path, write):
    """Calls write(tmp) for tmp = path + ".tmp", then renames tmp to path.

    Whatever happens, no temporary file stays behind.
    """
    tmp = path + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run(main):
    """Runs main(); an exception becomes "error: <type>: <message>", exit 1."""
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # Reported to fedge-export, which names the model.
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
