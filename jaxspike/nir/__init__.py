"""jaxspike <-> NIR, the Neuromorphic Intermediate Representation (Pedersen et al. 2024,
"Neuromorphic intermediate representation: a unified instruction set for
interoperable brain-inspired computing", Nat. Commun. 15, 8122).

Export a network or a whole model, write it, read it back (here or in
snnTorch, Norse, Sinabs, ...)::

    from jaxspike import nir as jnir

    exported = jnir.discriminator_network(disc, d_params, image_shape=(28, 28, 1))
    graph = jnir.to_nir(*exported)                   # a nir.NIRGraph
    jnir.write("disc.nir", graph)
    net, params, input_shape = jnir.from_nir(jnir.read("disc.nir"))
    logit, aux = net.apply({"params": params}, spikes)   # spikes [T, B, 784]

Discrete-time mapping (forward Euler with step ``dt``, :data:`DT` = 1e-4 s as
in snnTorch; details and proofs in :mod:`jaxspike.nir.neurons`)::

    jaxspike                          NIR
    v_t = beta v_{t-1} + J_t          LIF:  tau = dt / (1 - beta), r = tau / dt, v_leak = 0
    J_t = x_t W + b                   Affine(weight = W^T, bias = b)
    s_t = 1[v_t > thr]                v_threshold = thr
    reset "zero":  v_t = beta (1 - s_{t-1}) v_{t-1} + J_t      LIF/IF/CubaLIF with v_reset = 0 (same spikes)
    reset "subtract": v_t = ... - thr s_{t-1}                  jaxspike.SubtractLIF/IF/CubaLIF (extension)
    beta = 1 (integrate_and_fire)     IF:   r = 1  (v_t = v_{t-1} + r I_t)
    synaptic_lif (alpha, beta)        CubaLIF: tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta),
                                               r = tau_mem/dt, w_in = tau_syn/dt
    leaky_integrator (readouts)       LI (I for beta = 1)

    import:  beta = 1 - dt/tau,  J_t = (r dt/tau) I_t + v_leak dt/tau  (folded into kernel and bias)

Extension nodes (``jaxspike.*``, :mod:`jaxspike.nir.nodes`) say what NIR
cannot: reset by subtraction, transposed convolutions, reshapes, Bernoulli
spike sources and readouts over time. Another NIR reader refuses a file that
holds one instead of misreading it; ``to_nir(..., allow_extensions=False)``
refuses to make one. docs/nir.md says what another library needs to run them.
"""

from jaxspike.nir.exporter import (
    Exported,
    conv_padding,
    conv_transpose_padding,
    converted_network,
    discriminator_network,
    generator_network,
    to_nir,
    vae_encoder_network,
)
from jaxspike.nir.importer import Imported, from_nir
from jaxspike.nir.network import Bernoulli, Flatten, Network, Readout, Unflatten
from jaxspike.nir.neurons import DT, cell_to_node, node_to_cell
from jaxspike.nir.nodes import EXTENSION_NODES, is_extension, read, write

__all__ = [
    "DT",
    "EXTENSION_NODES",
    "Bernoulli",
    "Exported",
    "Flatten",
    "Imported",
    "Network",
    "Readout",
    "Unflatten",
    "cell_to_node",
    "conv_padding",
    "conv_transpose_padding",
    "converted_network",
    "discriminator_network",
    "from_nir",
    "generator_network",
    "is_extension",
    "node_to_cell",
    "read",
    "to_nir",
    "vae_encoder_network",
    "write",
]
