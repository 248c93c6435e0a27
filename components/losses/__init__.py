"""MoSA's training losses: v-prediction diffusion (``diffusion``), HADC mask (``mask``), dense tracking
(``tracking``, with the differentiable ``soft_tracker``), 3D contact (``contact``), and their Eq. 9
combination (``total``).

Import from the module you need: this package re-exports nothing, so a stage that uses only the
diffusion loss (the tiny base's trainer) does not depend on the tracking or contact code in dvc.yaml.
"""
