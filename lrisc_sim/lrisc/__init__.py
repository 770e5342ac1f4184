"""LRISC (the paper): latent-feature-guided conditional diffusion with entropy-driven variable-length JSCC.

One module per concept (paper symbols in their docstrings):

* ``config``      dataclass configs of every module and the ``small`` / ``paper`` / ``tiny`` presets
* ``analysis``    g_e, image -> latent z (H/16 x W/16)
* ``entropy``     factorized prior p(y), Gaussian conditional p(z|y) convolved with U(-1/2, 1/2) (eq. 2)
* ``hyperprior``  h_e, h_d
* ``snr_adapt``   SNR adaptation module (Fig. 3)
* ``jscc``        f_e, f_d, rate quantiser Q (eq. 3-4) and rate control
* ``rate_index``  how the rate indices (side information) are coded: fixed, enumerative, spatial-context
                  arithmetic code, and the coarser rate grid's accounting
* ``unet``        conditional U-Net X_theta of g_d (context maps from z_hat)
* ``diffusion``   eq. (7) loss and DDIM / DPM-Solver sampling (eq. 8) through diffusers' schedulers
* ``model``       the assembled model, checkpoints (safetensors + JSON card)
* ``losses``      eq. (9)-(11)
* ``task``        Algorithm 1 as a ``TrainTask`` of the one trainer (``lrisc-sim train recipes/lrisc_small.toml``)
* ``codec``       the engine-facing codec (``make_lrisc``) and the Fig. 6 helpers
* ``evaluate``    Kodak evaluation against DeepJSCC, written into the model card
"""
