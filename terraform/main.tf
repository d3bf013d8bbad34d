resource "juju_application" "image_builder" {
  name       = var.app_name
  model_uuid = var.model_uuid

  charm {
    name     = "github-runner-image-builder"
    channel  = var.channel
    revision = var.revision
    base     = var.base
  }

  config      = var.config
  constraints = var.constraints
  units       = var.units
}
