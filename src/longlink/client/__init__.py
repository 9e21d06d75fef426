"""longlink.client"""
