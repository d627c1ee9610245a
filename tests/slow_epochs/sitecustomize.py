"""Imported at startup by the processes a test starts with `processes.slow_epochs(seconds)`: every
Keras epoch ends that much later (a sleep), so that a trial lasts long enough to be killed or
stopped mid-way without training more than a few batches (CPU is what the suite runs short of)."""

import importlib.abc
import importlib.util
import os
import sys
import time

_SECONDS = float(os.environ.get("SWEEPLAB_TEST_EPOCH_S") or 0)
_MODULE = "keras.src.callbacks.callback_list"


class _SlowEpochs(importlib.abc.MetaPathFinder):
    """Patches CallbackList.on_epoch_end, which Keras' fit calls once per epoch, once it is loaded."""

    def find_spec(self, name, path, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            on_epoch_end = module.CallbackList.on_epoch_end

            def slowed(self, epoch, logs=None):
                time.sleep(_SECONDS)
                return on_epoch_end(self, epoch, logs)

            module.CallbackList.on_epoch_end = slowed

        spec.loader.exec_module = exec_module
        return spec


if _SECONDS > 0:
    sys.meta_path.insert(0, _SlowEpochs())
