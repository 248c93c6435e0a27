"""Appearance branch: backbone adapters (CogVideoX, Wan), structure blocks, HADC and the MoSA transformer.

Import what you need from its module (``components.dit.spec``, ``components.dit.mosa``, ...): this
package re-exports nothing, so importing the backbone specs does not pull in the MoSA modules and the
losses (and a stage that only needs a spec does not depend on them in dvc.yaml). Importing
``components.dit.spec`` does not import diffusers; an adapter is loaded on its first ``get_spec``.
"""
