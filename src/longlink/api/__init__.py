"""longlink.api"""
