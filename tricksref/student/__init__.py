"""The student edition's four exercise ops, computed through the calls the exercises put off limits.

The same entry points as :mod:`tricksref.scratch`, with the same semantics (values equal up to float
rounding), so that the book, the self-check and users' code run unchanged on a student's machine, while a
copy of this code pasted into an exercise is refused by the grader's rules on how the answer is written:

- :mod:`.lrn` through ``torch.nn.functional.local_response_norm``, the intra-channel modes too (each
  position's neighbourhood gathered into a "channel" axis that the operator sums across);
- :mod:`.batchnorm` through ``torch.nn.functional.batch_norm``, its gradient by autograd;
- :mod:`.dropout` through ``torch.nn.functional.dropout``;
- :mod:`.schedules` through ``torch.optim.SGD`` driven by :class:`tricksref.schedules.StagewiseLR`.

:mod:`tricksref._edition` picks this package when :mod:`tricksref.scratch` is absent (the student bundle)
or ``TRICKSREF_EDITION=student``.
"""
