//! Torch devices by name: `cpu`, `cuda`, `cuda:N`.

use tch::Device;

/// Parses a device name and checks that it exists on this machine.
pub fn parse_device(name: &str) -> Result<Device, String> {
    let cuda_index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Some(0),
        _ => name.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()),
    };
    let Some(index) = cuda_index else {
        return Err(format!("unknown device {name:?}; use cpu, cuda or cuda:N"));
    };
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(format!("device {name} is not available: this machine has {count} CUDA device(s)"));
    }
    Ok(Device::Cuda(index))
}

/// The name `parse_device` reads back.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
