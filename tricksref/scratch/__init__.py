"""The solutions edition's from-scratch computations of the four exercise ops, and nothing else.

- :mod:`.lrn`: the window sums and the division, inter and intra, both conventions, and the backward;
- :mod:`.batchnorm`: the batch statistics, normalization, running statistics and closed-form backward, with
  its C kernel (``_kernels.c``);
- :mod:`.dropout`: drawing the keep-mask and scaling, with its C kernel;
- :mod:`.schedules`: the two loops of stagewise SGD.

The public modules (:mod:`tricksref.lrn`, ...) check the arguments and call these through
:mod:`tricksref._edition`. The student edition of tricksref is this package's parent without this folder:
there :mod:`tricksref.student` computes the same ops through the calls the exercises put off limits.
"""
