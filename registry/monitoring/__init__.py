"""Monitoring: serving metrics, resources, drift and their history."""
