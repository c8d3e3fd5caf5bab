//! Where a model runs: `cpu`, `cuda[:N]` or `metal[:N]`, as the CLI's `--device` and the app's
//! settings name it. A GPU needs a build with the matching feature (`--features cuda` /
//! `metal`); asking for one that this build lacks, or that the machine does not have, is one
//! error naming the device.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, DeviceLocation};

use crate::ModelError;

/// A device by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = |reason: &str| ModelError::Device { device: s.to_string(), reason: reason.to_string() };
        let t = s.trim().to_ascii_lowercase();
        let (kind, index) = match t.split_once(':') {
            Some((k, i)) => (k.to_string(), Some(i.parse::<usize>().map_err(|_| bad("the index after ':' is not a number"))?)),
            None => (t.clone(), None),
        };
        match kind.as_str() {
            "cpu" if index.is_none() => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            "metal" => Ok(DeviceSpec::Metal(index.unwrap_or(0))),
            _ => Err(bad("unknown device (cpu, cuda, cuda:N, metal)")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

/// The GPU back ends compiled into this build.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    v
}

impl DeviceSpec {
    /// Open the device.
    pub fn open(self) -> Result<Device, ModelError> {
        let unavailable = |reason: String| ModelError::Device { device: self.to_string(), reason };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                if !cfg!(feature = "cuda") {
                    return Err(unavailable("this build has no CUDA support (build with `--features cuda`)".into()));
                }
                Device::new_cuda(i).map_err(|e| unavailable(format!("not available: {}", first_line(&e.to_string()))))
            }
            DeviceSpec::Metal(i) => {
                if !cfg!(feature = "metal") {
                    return Err(unavailable("this build has no Metal support (build with `--features metal`)".into()));
                }
                Device::new_metal(i).map_err(|e| unavailable(format!("not available: {}", first_line(&e.to_string()))))
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The name of an open device (`cpu`, `cuda:0`, `metal:0`).
pub fn name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("metal".parse::<DeviceSpec>().unwrap().to_string(), "metal:0");
        for bad in ["tpu", "cuda:x", "cpu:1", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("device '{bad}'")), "{e}");
        }
        assert_eq!(name(&DeviceSpec::Cpu.open().unwrap()), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_gpu_this_build_lacks_is_a_named_error() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert_eq!(e, "device 'cuda:0': this build has no CUDA support (build with `--features cuda`)");
        assert_eq!(compiled_backends(), vec!["cpu"]);
    }
}
