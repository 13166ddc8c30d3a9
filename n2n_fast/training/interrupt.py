"""Ctrl-C and SIGTERM during training: stop at a step boundary, after writing a checkpoint there."""
import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped train() at a step boundary, after writing a checkpoint there."""

    def __init__(self, step, checkpoint):
        super().__init__(f"training stopped at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, str(checkpoint)


class StopRequest:
    """While training: the first SIGINT/SIGTERM asks the loop to stop at the next step boundary (a half-made
    optimizer step must not be checkpointed); a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested, self._previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
