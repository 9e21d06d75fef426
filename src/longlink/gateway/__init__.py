"""longlink.gateway"""
