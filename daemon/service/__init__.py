"""The line service: one daemon per line, its threads, queues, answers, corrections and control commands."""

from daemon.service.line import LineDaemon, StartError

__all__ = ["LineDaemon", "StartError"]
