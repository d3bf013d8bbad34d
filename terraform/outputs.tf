output "app_name" {
  description = "Name of the deployed application."
  value       = juju_application.image_builder.name
}

output "provides" {
  description = "The application's provides endpoints, for juju_integration resources."
  value = {
    image     = "image"
    cos_agent = "cos-agent"
  }
}
