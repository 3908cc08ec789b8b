"""Checkpoints shipped with tricksref, each trained by ``make_checkpoint`` and described by a JSON record.

Load them with :func:`tricksref.finetune.load_pretrained`; nothing is downloaded.
"""
