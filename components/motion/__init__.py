"""Human motion core: skeletons, HumanML3D features, mocap, cameras, skeleton rendering."""
