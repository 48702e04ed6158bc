"""MedSR training: datasets of 2D slices from real volumes, losses, plain and GAN trainers. No Qt."""
