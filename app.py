#!/usr/bin/env python3
"""CDK entry point: builds the app from cdk.json's context and synthesizes it."""

from aws_cdk import App

from stacks.app_builder import build_app

build_app(App()).synth()
