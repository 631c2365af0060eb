"""Local-learning routes: networks trained without backpropagation.

* :mod:`~jaxspike.local.stdp` - the STDP / R-STDP digit network of Mozafari
  et al. 2019 (SpykeTorch), its stages, and the frozen front end it leaves;
* :mod:`~jaxspike.local.rbm` - the spiking RBM trained by event-driven
  contrastive divergence (Neftci et al. 2014), and its sampler.

Each route is a pure-model module (:mod:`jaxspike.models.spyketorch_net`,
:mod:`jaxspike.models.rbm`) plus a ``run`` here that trains it in a run
folder, checkpointing every epoch through :mod:`jaxspike.train.resume` (the
module the gradient loop uses), so a rerun of an interrupted job ends with
the same weights as an uninterrupted one.
"""
