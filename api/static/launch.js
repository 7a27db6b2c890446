document.getElementById("launch").submit();
